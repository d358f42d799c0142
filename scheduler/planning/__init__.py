"""The pure core: rules, planning, allocation and slot finding.

No module below this package performs I/O or reads the clock; the time is
always an argument. Adapters and the daemon build on it, never the reverse.
"""
