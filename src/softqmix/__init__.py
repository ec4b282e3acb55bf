"""Soft-QMIX experiment platform: value factorisation with maximum-entropy exploration."""

from pathlib import Path

__version__ = "0.1.0"

# The Hydra configs ship inside the package, so a plain (non-editable) install finds them too.
CONF_DIR = Path(__file__).resolve().parent / "conf"
