"""Drills: a real gateway put through what an operator fears, one command each, printing a table."""
