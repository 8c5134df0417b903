"""billing_audit_log: every audit record, queryable by auditors per tenant.

Modules: postgres (the table, the row of each audit event, the projection) and
reader (every SELECT on it).
"""
