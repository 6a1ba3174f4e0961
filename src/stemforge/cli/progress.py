"""Progress bars on stderr (tqdm), fed by the separator's ``progress(done_s, total_s)`` callback."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Optional


@contextmanager
def progress_bar(total_seconds: Optional[float], desc: str,
                 disable: bool = False) -> Iterator[Callable[[float, float], None]]:
    """A bar in seconds of audio; yields the callback to pass to the separator.

    ``total_seconds`` may be unknown (None) until the separator reports it.
    """
    from tqdm import tqdm

    with tqdm(total=round(total_seconds or 0.0, 2), desc=desc, unit="s", disable=disable, leave=False,
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s [{elapsed}<{remaining}]") as bar:

        def update(done: float, total: float) -> None:
            bar.total = round(total, 2)
            bar.n = round(done, 2)
            bar.refresh()

        yield update
