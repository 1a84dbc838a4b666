"""Garbage-collector settings for kubesoar's server processes (runtime, router)."""

from __future__ import annotations

import gc

__all__ = ["GC_GEN0_THRESHOLD", "tune_gc"]

# Young-generation collections every 700 allocations cost a pydantic/aiohttp
# request path about a tenth of its CPU (bench/README.md); 10,000 keeps the
# memory held by cyclic garbage small and the collections rare.
GC_GEN0_THRESHOLD = 10_000


def tune_gc(*, full_collection: bool = True) -> None:
    """For a server process, after its imports and start-up: move what exists now
    (modules, a loaded playbook) out of the collector's way (`gc.freeze`), and
    collect the young generation less often. Not for library use.

    What is garbage when freezing stays forever, so a collection comes first: a full
    one by default. `full_collection=False` collects the young generations only, for a
    runtime pod, whose start it makes shorter: there a full collection walked the
    ~50,000 objects of the imports for 35-100 ms before the first readiness answer and
    found nothing to free (a no-op playbook and the examples in playbooks/;
    bench/scale/README.md), while start-up's temporaries are in the young generations.
    """
    gc.collect(2 if full_collection else 1)  # 2: all generations
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)
