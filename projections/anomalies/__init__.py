"""billing_anomalies: unusual days of each workspace's usage, explained.

Per tenant, billing period and flag (an episode of one series: workspace,
product area and unit): its first and last day, kind (spike, drop,
level_shift), direction, observed against expected and the usual band, a
score, one sentence that explains it, and its status (open, acknowledged with
the admin's note, or cleared by restated data, with why). Series with too
little history are listed as not judged. Deterministic like the forecast:
time comes from ticks; a flag's status change is recorded as a notice.

Modules: detect (the baseline and episodes, pure), explain (the sentences),
postgres (tables, re-evaluating), reader (the SELECTs answers need).
"""
