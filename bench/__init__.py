"""Heimdall benchmark harness: nginx fixed-response upstream, wrk load, gateway overhead report.

Run with ``make bench`` (or ``python -m bench --help``).
"""
