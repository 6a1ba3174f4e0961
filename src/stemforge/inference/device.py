"""Running a model on its device, with a way out when the device runs out of memory.

GPUs run out of memory on long segments, big batches or big bags. Instead of crashing,
:class:`DeviceRunner` catches the out-of-memory error and retries the same segments with smaller
batches (halving down to one segment); if a single segment still does not fit, it moves that
model to the CPU and recomputes there (same inputs, same weights: the same output up to float
rounding), warning once. The rest of the run continues with the smaller batch or on the CPU.
"""
from __future__ import annotations

import logging
import threading

import torch
from torch import nn

logger = logging.getLogger(__name__)


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA/MPS/CPU allocator out-of-memory errors."""
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    if oom_type and isinstance(error, oom_type):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


class DeviceRunner:
    """``runner(model, inputs (B, C, L)) -> (B, S, C, L')`` on ``device``.

    On out-of-memory: smaller batches first, then ``fallback`` (the CPU).
    """

    def __init__(self, device: torch.device, fallback: torch.device = torch.device("cpu")):
        self.device = torch.device(device)
        self.fallback = torch.device(fallback)
        self._fallen_back: set[int] = set()
        self._lock = threading.Lock()
        self.max_batch: int | None = None  # lowered after an out-of-memory error

    def device_for(self, model: nn.Module) -> torch.device:
        return self.fallback if id(model) in self._fallen_back else self.device

    def __call__(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        if self.max_batch is not None and inputs.shape[0] > self.max_batch:
            return torch.cat([self(model, part) for part in inputs.split(self.max_batch)])
        device = self.device_for(model)
        try:
            return self._forward(model, inputs, device)
        except Exception as error:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
            if not is_out_of_memory(error) or device == self.fallback:
                raise
        self._free_cache()
        if inputs.shape[0] > 1:
            self._lower_batch(inputs.shape[0] // 2)
            return self(model, inputs)
        self._move_to_fallback(model)
        return self._forward(model, inputs, self.fallback)

    def _lower_batch(self, size: int) -> None:
        with self._lock:
            if self.max_batch is None or size < self.max_batch:
                logger.warning("out of memory on %s: retrying with %d segment(s) per batch", self.device, size)
                self.max_batch = size

    def _free_cache(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _move_to_fallback(self, model: nn.Module) -> None:
        with self._lock:
            if id(model) in self._fallen_back:
                return
            logger.warning("out of memory on %s: continuing this model on %s (slower). Use a smaller "
                           "--segment or -d cpu to avoid this.", self.device, self.fallback)
            model.to(self.fallback)
            self._fallen_back.add(id(model))

    @staticmethod
    def _forward(model: nn.Module, inputs: torch.Tensor, device: torch.device) -> torch.Tensor:
        with torch.inference_mode():
            out = model(inputs.to(device))
        return out.to(inputs.device)
