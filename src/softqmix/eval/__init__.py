"""Greedy evaluation scheduling and env-specific reports."""
