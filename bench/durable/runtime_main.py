"""The durable bench's runtime process: `python -m kubesoar runtime` with the bench's
optional speed-ups (speedups.py) switched on first.

    python bench/durable/runtime_main.py [--uvloop] [--orjson]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import speedups


def main() -> int:
    parser = argparse.ArgumentParser()
    speedups.add_flags(parser)
    args = parser.parse_args()
    speedups.apply(args.uvloop, args.orjson, speedups.RUNTIME_JSON)
    from kubesoar._cli import main as kubesoar_main

    return kubesoar_main(["runtime"])


if __name__ == "__main__":
    raise SystemExit(main())
