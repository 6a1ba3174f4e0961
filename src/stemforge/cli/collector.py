"""Python's cyclic garbage collector around ``separate``'s start-up.

Importing torch and loading a model create ~180k objects that live until the program ends. The
collector walks all of them in every full collection: three of those (16-40 ms each) ran while
torch was imported in a 30 s htdemucs run, for nothing. :func:`startup` keeps the collector off
while they are created, then freezes them (``gc.freeze``) so the collections made during
separation only walk the objects made since.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Callable, Iterator


@contextmanager
def startup() -> Iterator[Callable[[], None]]:
    """Collect no garbage inside the block until the yielded ``started()`` is called; it freezes
    every object then alive and turns collection back on. On exit the frozen objects are handed
    back to the collector and its previous state is restored (``main()`` may run in-process, in
    tests or notebooks)."""
    was_enabled = gc.isenabled()
    gc.disable()
    froze = False

    def started() -> None:
        nonlocal froze
        if not froze:
            gc.freeze()  # before enabling: else the next allocation walks all of them in gen 0
            froze = True
            if was_enabled:
                gc.enable()

    try:
        yield started
    finally:
        if froze:
            gc.unfreeze()
        if was_enabled:
            gc.enable()
