"""billing_usage_daily: usage per tenant, workspace, product area, day and unit.

Every quantity-changing metering event becomes one ledger entry (a signed delta,
in UTC, independent of any calendar). Daily rows are sums of ledger entries,
bucketed in the tenant's calendar, so they are additive: processing a history in
any batch split gives the same rows as a rebuild. When a tenant's calendar
changes, its daily rows are recomputed from its ledger entries, so the result
depends only on the histories, never on how the two upstreams interleaved.

Per day the view also keeps what was known when the day ended
(first_reported_quantity), how many events arrived after that (late_event_count)
and what changed after the billing period closed (adjustment_quantity and
adjustment_count): a late adjustment against a closed period, never silent.

Modules: changes (events -> ledger entries and calendars, pure), reference (the
rules in Python), postgres (tables, COPY, the rollup), reader (every SELECT for
usage answers), ledger (the SELECTs corrections need), query and rows (what a
usage question may ask, and the shapes of the answer).
"""
