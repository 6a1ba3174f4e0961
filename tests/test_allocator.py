"""The heap helpers run on glibc Linux and are harmless no-ops elsewhere."""
from __future__ import annotations

import sys

import pytest

from stemforge import allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_glibc_helpers_run_on_linux():
    assert allocator.release_free_memory() is True
    assert allocator.limit_malloc_arenas(8) is True


def test_helpers_are_noops_without_glibc(monkeypatch):
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert allocator.release_free_memory() is False
    assert allocator.limit_malloc_arenas(2) is False
    assert allocator.limit_malloc_arenas(0) is False
