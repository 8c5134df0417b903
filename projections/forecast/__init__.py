"""billing_forecast: the projected invoice per tenant and billing period.

Per tenant, period, workspace ('' for the whole tenant), product area and
unit: the quantity to date and projected at the period's end (p10, p50, p90),
and for the whole tenant's priced lines the charges likewise; per tenant and
period the total, the budget and the day the p50 path reaches it. A
deterministic function of the history, ticks of time included: README.md
says how it moves with time and why a rebuild gives the same rows.

Modules: changes (events -> inputs, pure), estimate (inputs -> one period's
answer, pure), postgres (tables, re-projecting), reader (the SELECTs answers
need).
"""
