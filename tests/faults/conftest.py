"""The fault suite's code lives in bench/faults (the benchmark runs the same scenarios):
make the repository root importable as it is for `python bench/faults/run.py`."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
