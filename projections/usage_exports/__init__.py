"""billing_usage_exports: the CSV exports each tenant made, from UsageExported.

Modules: postgres (the table, the row of each export, the projection) and
reader (every SELECT on it).
"""
