"""Out-of-memory on the device: the segment is recomputed on the fallback device, never a crash."""
from __future__ import annotations

import logging

import pytest
import torch

from stemforge.inference.device import DeviceRunner, is_out_of_memory
from stemforge.inference.separator import Separator
from tests.inference.test_engine import ContextModel


class FlakyDeviceModel(ContextModel):
    """Raises an out-of-memory error on its first ``failures`` forwards, as a full GPU would."""

    def __init__(self, failures: int):
        super().__init__()
        self.failures = failures
        self.moved_to = []

    def _apply(self, fn, *args, **kwargs):
        self.moved_to.append(fn)
        return super()._apply(fn, *args, **kwargs)

    def forward(self, mix):
        if self.failures > 0:
            self.failures -= 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().forward(mix)


def test_oom_falls_back_and_output_is_unchanged(caplog):
    mix = torch.randn(2, 1500)
    healthy = ContextModel().eval()
    reference = Separator(healthy, device="cpu", shifts=0).separate_tensor(mix)
    flaky = FlakyDeviceModel(failures=1).eval()
    flaky.load_state_dict(healthy.state_dict())
    separator = Separator(flaky, device="cpu", shifts=0)
    separator.runner.device = torch.device("meta")  # pretend the primary device is an accelerator
    with caplog.at_level(logging.WARNING):
        stems = separator.separate_tensor(mix)
    torch.testing.assert_close(stems, reference)
    assert separator.runner.device_for(flaky) == torch.device("cpu")
    assert sum("out of memory" in record.message for record in caplog.records) == 1


def test_oom_on_the_fallback_device_is_raised():
    runner = DeviceRunner(torch.device("cpu"))
    with pytest.raises(torch.OutOfMemoryError):
        runner(FlakyDeviceModel(failures=5).eval(), torch.randn(1, 2, 300))


def test_other_errors_are_not_swallowed():
    runner = DeviceRunner(torch.device("meta"))

    class Broken(torch.nn.Module):
        def forward(self, mix):
            raise ValueError("a real bug")

    with pytest.raises(ValueError, match="real bug"):
        runner(Broken(), torch.randn(1, 2, 10))


def test_recognises_oom_messages():
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert is_out_of_memory(torch.OutOfMemoryError("x"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


class BatchLimitedModel(ContextModel):
    """Out of memory whenever it gets more than ``limit`` segments at once."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit
        self.batches = []

    def forward(self, mix):
        self.batches.append(mix.shape[0])
        if mix.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return super().forward(mix)


def test_oom_shrinks_the_batch_before_leaving_the_device(caplog):
    mix = torch.randn(2, 3000)
    healthy = ContextModel().eval()
    reference = Separator(healthy, device="cpu", shifts=0).separate_tensor(mix)
    limited = BatchLimitedModel(limit=2).eval()
    limited.load_state_dict(healthy.state_dict())
    separator = Separator(limited, device="cpu", shifts=0, batch_size=5)
    separator.runner.fallback = torch.device("meta")  # must never be needed: shrinking the batch is enough
    with caplog.at_level(logging.WARNING):
        stems = separator.separate_tensor(mix)
    torch.testing.assert_close(stems, reference)
    assert separator.runner.max_batch == 2
    assert separator.runner.device_for(limited) == torch.device("cpu")
    assert max(limited.batches[limited.batches.index(2):]) <= 2
