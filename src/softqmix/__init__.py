"""Soft-QMIX experiment platform: value factorisation with maximum-entropy exploration."""

__version__ = "0.1.0"
