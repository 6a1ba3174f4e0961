"""The heap helpers run on glibc Linux and are harmless no-ops elsewhere."""
from __future__ import annotations

import subprocess
import sys
import textwrap

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
    assert allocator.reuse_freed_pages() is False


_FAULTS_OF_REALLOCATING = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from stemforge import allocator
    if sys.argv[1] == "reuse":
        assert allocator.reuse_freed_pages()
    block = np.ones(64 << 20, dtype=np.uint8)  # above glibc's largest mmap threshold
    del block
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        block = np.ones(64 << 20, dtype=np.uint8)
        del block
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_reused_pages_are_not_faulted_in_again():
    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", _FAULTS_OF_REALLOCATING, mode], check=True,
                             capture_output=True, text=True).stdout
        return int(out.split()[-1])

    pages = 4 * (64 << 20) // 4096
    assert faults("default") > pages // 2  # each 64 MB block is mapped and zeroed afresh
    assert faults("reuse") < pages // 20
