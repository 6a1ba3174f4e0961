"""The heap helpers run on glibc Linux and are harmless no-ops elsewhere."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from stemforge import allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_glibc_helpers_run_on_linux(monkeypatch):
    monkeypatch.setattr(allocator, "_heap_prefaulted", False)  # in-process CLI tests prefault
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
    import torch
    from stemforge import allocator
    torch.set_num_threads(1)
    if sys.argv[1] == "reuse":  # as the CLI sets it up
        assert allocator.limit_malloc_arenas(1)
        assert allocator.reuse_freed_pages()

    def forward():  # blocks above glibc's largest mmap threshold (32 MB), freed in another order
        a = torch.ones(40 << 20, dtype=torch.uint8)
        b = torch.ones(64 << 20, dtype=torch.uint8)
        kept = a[:1] + b[:1]
        del a
        c = torch.ones(48 << 20, dtype=torch.uint8)
        return kept

    for _ in range(8):  # the heap reaches its high-water mark (within ~5 rounds)
        forward()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(6):
        forward()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _page_faults(script: str, mode: str) -> int:
    """Run ``script`` in a fresh interpreter with ``mode`` as its argument; the page faults it
    reports (its last printed number)."""
    out = subprocess.run([sys.executable, "-c", script, mode], check=True, capture_output=True,
                         text=True).stdout
    return int(out.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_reused_pages_are_not_faulted_in_again():
    def faults(mode: str) -> int:
        return _page_faults(_FAULTS_OF_REALLOCATING, mode)

    pages = 6 * ((40 + 64 + 48) << 20) // 4096
    assert faults("default") > pages // 2  # each block is mapped and zeroed afresh
    # reused, but for an occasional late growth of the heap (glibc's aligned allocations cannot
    # always take a freed block of exactly their size; measured 0 to ~11% of the pages)
    assert faults("reuse") < pages // 5


def test_prefault_heap_is_a_noop_without_glibc_or_bytes(monkeypatch):
    assert allocator.prefault_heap(0) is False
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert allocator.prefault_heap(1 << 20) is False


_FAULTS_AFTER_PREFAULT = textwrap.dedent("""
    import resource, sys
    from stemforge import allocator
    assert allocator.limit_malloc_arenas(1)
    assert allocator.reuse_freed_pages()
    if sys.argv[1] == "prefault":  # importing torch then takes ~100 MB of these pages
        assert allocator.prefault_heap(256 << 20)
    kept = bytearray(32 << 20)  # like the checkpoint read ahead: the prefault is now a hole
    import torch
    assert allocator.release_free_memory() is (sys.argv[1] != "prefault")  # as after loading
    torch.set_num_threads(1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.ones(64 << 20, dtype=torch.uint8)  # a first forward's activations
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_prefaulted_heap_serves_the_first_large_allocation_without_faults():
    pages = (64 << 20) // 4096
    assert _page_faults(_FAULTS_AFTER_PREFAULT, "plain") > pages // 2  # each fresh page faults
    assert _page_faults(_FAULTS_AFTER_PREFAULT, "prefault") < pages // 10
