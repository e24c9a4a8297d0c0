"""The iCalendar side of apexcal: pure functions from activities to calendar data.

Nothing in this package performs I/O, reads the clock or imports a network or
database library; every value in the output comes from the input data, so the
same input always yields the same bytes (and the same hashes and ETags).
"""
