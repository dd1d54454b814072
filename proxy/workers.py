"""The serving process as a process: the collector tuned once start-up is done.

Garbage collection was 12 % of the CPU per request with Python's defaults: a young-generation pass
every 700 allocations walks every object a request has made so far, and a full pass walks the whole
start-up heap (modules, the route table, the settings, the key set) every time. After start-up that
heap is frozen (`gc.freeze`: never walked again, never freed), and the young generation is collected
every `GEN0_THRESHOLD` allocations instead; reference counting still frees almost everything at once,
so this only delays the rare cycle.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    """Call once, when start-up is done and the listeners are up."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
