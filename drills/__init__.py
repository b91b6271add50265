"""Fault drills: the gateway run as an operator runs it, with faults injected (not benchmarks)."""
