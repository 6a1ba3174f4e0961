"""Out-of-memory on the device: the segment is recomputed on the fallback device, never a crash."""
from __future__ import annotations

import logging

import pytest
import torch

from stemforge.inference.device import DeviceRunner, is_out_of_memory
from stemforge.inference.separator import Separator
from tests.inference.test_engine import ContextModel


class FlakyDeviceModel(ContextModel):
    """Raises an out-of-memory error on its first ``failures`` forwards, as a full GPU would.

    Like HTDemucs it only runs on its full segment (``max_segment``), so cutting segments in
    pieces cannot help and the ladder goes from the batch straight to the CPU."""

    max_segment = 1.3

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


class LengthLimitedModel(ContextModel):
    """Out of memory on ``oom_device`` for inputs longer than ``limit`` samples (a GPU too small
    for the segment)."""

    def __init__(self, limit: int, oom_device: str = "cpu"):
        super().__init__(samplerate=200, segment=4.0)
        self.limit = limit
        self.oom_device = oom_device
        self.lengths = []

    def forward(self, mix):
        self.lengths.append(mix.shape[-1])
        if mix.device.type == self.oom_device and mix.shape[-1] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB")
        return super().forward(mix)


def _sdr(reference, estimate):
    return float(10 * torch.log10(reference.pow(2).sum() / (reference - estimate).pow(2).sum()))


def test_oom_cuts_segments_in_pieces_before_leaving_the_device(caplog):
    mix = torch.randn(2, 3000)
    healthy = ContextModel(samplerate=200, segment=4.0).eval()
    reference = Separator(healthy, device="cpu", shifts=0).separate_tensor(mix)
    limited = LengthLimitedModel(limit=500).eval()  # segments are 800 (+ padding): quarters fit
    limited.load_state_dict(healthy.state_dict())
    separator = Separator(limited, device="cpu", shifts=0)
    separator.runner.fallback = torch.device("meta")  # must never be needed: pieces are enough
    with caplog.at_level(logging.WARNING):
        stems = separator.separate_tensor(mix)
    assert stems.shape == reference.shape
    assert torch.isfinite(stems).all()
    assert _sdr(reference, stems) > 20  # pieces see less context: close, not identical
    assert separator.runner.max_piece is not None and separator.runner.max_piece <= 500
    first_failure = next(i for i, n in enumerate(limited.lengths) if n > 500)
    later = limited.lengths[first_failure + 1:]
    assert later and sum(n > 500 for n in later) <= 1  # one more failure while halving, then never
    assert sum("pieces" in record.message for record in caplog.records) >= 1
    assert separator.runner.device_for(limited) == torch.device("cpu")


def test_models_bound_to_their_segment_are_not_cut_in_pieces():
    runner = DeviceRunner(torch.device("meta"))
    model = FlakyDeviceModel(failures=1).eval()
    out = runner(model, torch.randn(1, 2, 300))
    assert out.shape == (1, 3, 2, 300)
    assert runner.max_piece is None
    assert runner.device_for(model) == torch.device("cpu")


def test_pieces_stop_at_the_minimum_then_the_cpu_takes_over(caplog):
    model = LengthLimitedModel(limit=0, oom_device="meta").eval()  # nothing fits on the "device"
    runner = DeviceRunner(torch.device("meta"))
    mix = torch.randn(1, 2, 800)
    with caplog.at_level(logging.WARNING):
        out = runner(model, mix)
    torch.testing.assert_close(out, ContextModel.forward(model, mix))  # whole segment, on the CPU
    assert runner.max_piece == 200  # 800 -> 400 -> 200 (1 s at 200 Hz), then no smaller
    assert runner.device_for(model) == torch.device("cpu")
    messages = [record.message for record in caplog.records]
    assert sum("pieces" in m for m in messages) == 2 and sum("continuing" in m for m in messages) == 1
