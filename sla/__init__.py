"""The SLA engine: business time on the production calendar, policies, a lead's SLA state.

Pure domain code: no I/O, no clock and no logging. Every function that needs the
current time takes it as an argument.
"""
