"""Running a model on its device, with a way out when the device runs out of memory.

GPUs run out of memory on long segments, big batches or big bags. Instead of crashing,
:class:`DeviceRunner` catches the out-of-memory error and walks down a ladder, warning once per
step, and the rest of the run stays on the step that worked:

1. smaller batches (halving down to one segment): the output does not change;
2. smaller segments, for models that accept shorter inputs (v2/v3 Demucs, HDemucs; not HTDemucs,
   whose input is always its training length): the segment is separated in overlapping halves
   (then quarters, ... down to :data:`MIN_PIECE_SECONDS`) with the same overlap-add engine. The
   output changes slightly, as with a smaller ``--segment``;
3. the CPU: the model moves there and the segment is recomputed (same inputs, same weights: the
   same output up to float rounding).
"""
from __future__ import annotations

import logging
import threading

import torch
from torch import nn

from .chunking import ArraySource
from .engine import PassSettings, run_pass

logger = logging.getLogger(__name__)

MIN_PIECE_SECONDS = 1.0
"""Smallest piece a segment is cut into on out-of-memory before falling back to the CPU."""
PIECE_OVERLAP = 0.25


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA/MPS/CPU allocator out-of-memory errors."""
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    if oom_type and isinstance(error, oom_type):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


class DeviceRunner:
    """``runner(model, inputs (B, C, L)) -> (B, S, C, L')`` on ``device``.

    On out-of-memory: smaller batches first, then smaller segments (models that accept them),
    then ``fallback`` (the CPU).
    """

    def __init__(self, device: torch.device, fallback: torch.device = torch.device("cpu")):
        self.device = torch.device(device)
        self.fallback = torch.device(fallback)
        self._fallen_back: set[int] = set()
        self._lock = threading.Lock()
        self.max_batch: int | None = None  # lowered after an out-of-memory error
        self.max_piece: int | None = None  # samples per model input, lowered after an out-of-memory error

    def device_for(self, model: nn.Module) -> torch.device:
        return self.fallback if id(model) in self._fallen_back else self.device

    def __call__(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        if self.max_batch is not None and inputs.shape[0] > self.max_batch:
            return torch.cat([self(model, part) for part in inputs.split(self.max_batch)])
        device = self.device_for(model)
        piece = self.max_piece
        if (device != self.fallback and piece is not None
                and inputs.shape[-1] > _input_length(model, piece)
                and _accepts_shorter(model, inputs.shape[-1])):
            return self._in_pieces(model, inputs, piece)
        try:
            return self._forward(model, inputs, device)
        except Exception as error:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
            if not is_out_of_memory(error) or device == self.fallback:
                raise
        self._free_cache()
        if inputs.shape[0] > 1:
            self._lower_batch(inputs.shape[0] // 2)
            return self(model, inputs)
        piece = (piece or inputs.shape[-1]) // 2
        if piece >= MIN_PIECE_SECONDS * model.samplerate and _accepts_shorter(model, inputs.shape[-1]):
            self._lower_piece(piece)
            return self(model, inputs)
        self._move_to_fallback(model)
        return self._forward(model, inputs, self.fallback)

    def _in_pieces(self, model: nn.Module, inputs: torch.Tensor, piece: int) -> torch.Tensor:
        """``inputs: (B, C, L)`` separated in overlapping pieces of ``piece`` samples (each piece
        through this runner, so a piece that still does not fit is cut again) -> ``(B, S, C, L)``."""
        settings = PassSettings(split=True, overlap=PIECE_OVERLAP, segment=piece / model.samplerate)
        out = torch.stack([torch.cat(list(run_pass(model, ArraySource(row), settings, self)), dim=-1)
                           for row in inputs])
        if self.device_for(model) == self.fallback:
            # the smallest pieces did not fit either: the CPU has the memory for the whole segment
            return self._forward(model, inputs, self.fallback)
        return out

    def _lower_piece(self, size: int) -> None:
        with self._lock:
            if self.max_piece is None or size < self.max_piece:
                logger.warning("out of memory on %s: separating each segment in pieces of %d samples "
                               "(the output changes slightly, as with a smaller --segment)",
                               self.device, size)
                self.max_piece = size

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


def _accepts_shorter(model: nn.Module, length: int) -> bool:
    """True if ``model`` runs on inputs shorter than ``length`` samples, i.e. cutting a segment
    in halves saves memory. HTDemucs pads every input to its training length: never."""
    if getattr(model, "max_segment", None) is not None:
        return False
    valid_length = getattr(model, "valid_length", None)
    half = length // 2
    return valid_length is None or valid_length(half) < length


def _input_length(model: nn.Module, piece: int) -> int:
    """Length of the model input for a piece of ``piece`` samples (with its padding/context)."""
    valid_length = getattr(model, "valid_length", None)
    return valid_length(piece) if valid_length is not None else piece
