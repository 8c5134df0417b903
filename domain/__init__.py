"""The billing domain: aggregates, events, values and rules. Pure: no I/O, no clock."""
