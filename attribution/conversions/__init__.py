"""Offline conversions: which calls count, the platforms' formats, the outbox and its delivery."""
