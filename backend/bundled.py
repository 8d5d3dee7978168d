"""What ships with the app in examples/: the bundled dish pictures, their metadata and the small
sample sets. Defined once here; every reader of the folder takes it from this module."""

from __future__ import annotations

from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
DISHES_FILE = EXAMPLES_DIR / "dishes.json"  # the 12 bundled dishes: names and cuisines in zh and en
PROBE_DIR = EXAMPLES_DIR / "probe"  # the general-ability probe: not food (examples/make_probe.py)
