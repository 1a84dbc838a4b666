"""Garbage-collector settings for kubesoar's server processes (runtime, router)."""

from __future__ import annotations

import gc

__all__ = ["GC_GEN0_THRESHOLD", "tune_gc"]

# Young-generation collections every 700 allocations cost a pydantic/aiohttp
# request path about a tenth of its CPU (bench/README.md); 10,000 keeps the
# memory held by cyclic garbage small and the collections rare.
GC_GEN0_THRESHOLD = 10_000


def tune_gc() -> None:
    """For a server process, after its imports and start-up: move what exists now
    (modules, a loaded playbook) out of the collector's way (`gc.freeze`), and
    collect the young generation less often. Not for library use."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)
