"""Run checkpoint-loading tests twice: reading the file, and from bytes read ahead in memory."""
from __future__ import annotations

import pytest

from stemforge.pretrained import readahead


@pytest.fixture(params=["file", "read-ahead"])
def byte_source(request, monkeypatch) -> str:
    """``read-ahead``: every checkpoint the loader opens was read ahead first (background
    thread, sha256, CRC of the zip members), as the CLI does while importing torch, so the
    loader takes its bytes from memory instead of the file."""
    if request.param == "read-ahead":
        claim = readahead.claim

        def claim_after_reading_ahead(path):
            readahead.start([path])
            return claim(path)

        monkeypatch.setattr(readahead, "claim", claim_after_reading_ahead)
    yield request.param
    readahead.clear()
