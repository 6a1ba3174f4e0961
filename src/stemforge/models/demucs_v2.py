"""Demucs 2.x: the 2019 waveform U-Net (``-n demucs``), which Demucs >= 3 no longer ships.

Défossez et al., "Music Source Separation in the Waveform Domain" (2019). The mix is
(optionally) normalised, upsampled 2x, encoded by ``depth`` strided convolutions, passed through a
bidirectional LSTM, decoded by transposed convolutions with U-Net skips, and downsampled 2x.

Constructor keywords (names and defaults) and ``state_dict()`` keys are those of
``demucs.model.Demucs`` in demucs 2.0.3, so the official 2.x weight files (plain state dicts,
see :data:`V2_OFFICIAL`) load with ``strict=True``:

- ``encoder.{i}``: ``Conv1d(k, s)``, ReLU, [``Conv1d(1)`` rewrite, GLU/ReLU]
- ``decoder.{i}``: [``Conv1d(context)`` rewrite, GLU/ReLU], ``ConvTranspose1d(k, s)``, [ReLU]
- ``lstm.lstm`` (2-layer BiLSTM), ``lstm.linear``

Segment: demucs 2.0.3 separates a track (``separate.py``, ``split=True`` by default) by applying
the model to chunks of ``segment_length`` samples (default ``4 * 10 * 44100``, i.e. 40 s, the
value all official 2.x models use) with 25% overlap and triangular cross-fade weights, each chunk
padded with its surrounding audio to :meth:`DemucsV2.valid_length` and the output centre-trimmed.
That is exactly what the stemforge engine does with ``segment`` seconds, so ``segment`` is
``segment_length / samplerate`` (40 s for the official models) and results match 2.0.3's own
``separate`` with its defaults. The model has no maximum input length (``max_segment`` is None).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .layers.conv_blocks import BLSTM, rescale_module
from .layers.resample import downsample2, upsample2
from .layers.utils import unet_pass
from .layers.waveform import conv_unet_valid_length, standardise_by_mono

# official model name -> (file name under https://dl.fbaipublicfiles.com/demucs/v3.0/, channels)
V2_OFFICIAL: dict[str, tuple[str, int]] = {
    "demucs": ("demucs-e07c671f.th", 64),
    "demucs_extra": ("demucs_extra-3646af93.th", 64),
    "demucs48_hq": ("demucs48_hq-28a1282c.th", 48),
}
V2_SOURCES: list[str] = ["drums", "bass", "other", "vocals"]


def v2_config_for(name: str) -> dict:
    """Constructor kwargs of :class:`DemucsV2` for an official 2.x weight file.

    ``name`` is a model name (``"demucs48_hq"``) or a file name / path whose stem is
    ``<model>-<sha8>`` (``"demucs48_hq-28a1282c.th"``). Raises ``KeyError`` for anything else.
    """
    stem = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    if stem.endswith(".th"):
        stem = stem[: -len(".th")]
    model_name = stem if stem in V2_OFFICIAL else stem.rsplit("-", 1)[0]
    if model_name not in V2_OFFICIAL:
        known = ", ".join(sorted(V2_OFFICIAL))
        raise KeyError(f"{name!r} is not an official Demucs 2.x model (known: {known})")
    _, channels = V2_OFFICIAL[model_name]
    return {"sources": list(V2_SOURCES), "channels": channels}


class DemucsV2(nn.Module):
    """The Demucs 2.x waveform separator.

    ``forward(mix: (B, audio_channels, T)) -> (B, S, audio_channels, T')``. ``T'`` equals ``T``
    only when ``T`` is a valid length and ``context == 1``; otherwise the output is longer than the
    usable part and callers pad the input to :meth:`valid_length` and centre-trim the output.
    """

    def __init__(self,
                 sources: Sequence[str],
                 audio_channels: int = 2,
                 channels: int = 64,
                 depth: int = 6,
                 rewrite: bool = True,
                 glu: bool = True,
                 rescale: float = 0.1,
                 resample: bool = True,
                 kernel_size: int = 8,
                 stride: int = 4,
                 growth: float = 2.,
                 lstm_layers: int = 2,
                 context: int = 3,
                 normalize: bool = False,
                 samplerate: int = 44100,
                 segment_length: int = 4 * 10 * 44100) -> None:
        """
        Args:
            sources: stem names, in output order.
            audio_channels: channels of the mix and of each stem.
            channels: output channels of the first encoder layer.
            depth: number of encoder (and decoder) layers.
            rewrite: add a 1x1 conv after each encoder conv and a ``context``-wide conv before
                each decoder transposed conv.
            glu: use GLU (doubling the rewrite channels) instead of ReLU after the rewrite convs.
            rescale: if non-zero, rescale initial conv weights towards this standard deviation.
            resample: work internally at twice the sample rate.
            kernel_size, stride: of the encoder convs / decoder transposed convs.
            growth: channel multiplier from one encoder layer to the next.
            lstm_layers: layers of the bidirectional LSTM between encoder and decoder (0: none).
            context: kernel size of the decoder rewrite conv.
            normalize: standardise each input by its own mono mean/std (undone on the output).
            samplerate: sample rate of the model (Hz).
            segment_length: training segment length in samples; the separation chunk size.
        """
        super().__init__()
        self.sources = list(sources)
        self.audio_channels = audio_channels
        self.channels = channels
        self.depth = depth
        self.kernel_size = kernel_size
        self.stride = stride
        self.context = context
        self.resample = resample
        self.normalize = normalize
        self.samplerate = samplerate
        self.segment_length = segment_length
        self.segment = segment_length / samplerate

        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        width_in = audio_channels
        width = channels
        for index in range(depth):
            self.encoder.append(self._encoder_layer(width_in, width, rewrite, glu))
            width_out = width_in if index > 0 else len(self.sources) * audio_channels
            self.decoder.insert(0, self._decoder_layer(width, width_out, rewrite, glu,
                                                       last=index == 0))
            width_in = width
            width = int(growth * width)

        self.lstm = BLSTM(width_in, lstm_layers) if lstm_layers else None
        if rescale:
            rescale_module(self, reference=rescale)

    def _encoder_layer(self, width_in: int, width: int, rewrite: bool, glu: bool) -> nn.Sequential:
        layers: list[nn.Module] = [nn.Conv1d(width_in, width, self.kernel_size, self.stride),
                                   nn.ReLU()]
        if rewrite:
            layers += [nn.Conv1d(width, 2 * width if glu else width, 1), _gate(glu)]
        return nn.Sequential(*layers)

    def _decoder_layer(self, width: int, width_out: int, rewrite: bool, glu: bool,
                       last: bool) -> nn.Sequential:
        layers: list[nn.Module] = []
        if rewrite:
            layers += [nn.Conv1d(width, 2 * width if glu else width, self.context), _gate(glu)]
        layers.append(nn.ConvTranspose1d(width, width_out, self.kernel_size, self.stride))
        if not last:
            layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    @property
    def max_segment(self) -> None:
        """No limit: the model runs on inputs of any length."""
        return None

    def valid_length(self, length: int) -> int:
        """Smallest input length >= ``length`` that leaves no sample unused by the strided convs.

        With such an input and ``context == 1`` the output has the input's length; with
        ``context > 1`` the output is longer and must be centre-trimmed.
        """
        return conv_unet_valid_length(length, depth=self.depth, kernel_size=self.kernel_size,
                                      stride=self.stride, resample=self.resample,
                                      extra_per_layer=self.context - 1)

    def _standardise(self, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float,
                                                        torch.Tensor | float]:
        """``mix: (B, C, T)`` -> (standardised mix, mean ``(B, 1, 1)``, std ``(B, 1, 1)``)."""
        if not self.normalize:
            return mix / (1 + 1e-5), 0.0, 1.0
        return standardise_by_mono(mix)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """``mix: (B, audio_channels, T)`` -> stems ``(B, len(sources), audio_channels, T')``."""
        x, mean, std = self._standardise(mix)
        if self.resample:
            x = upsample2(x)
        x = unet_pass(x, self.encoder, self.decoder, self.lstm)
        if self.resample:
            x = downsample2(x)
        x = x * std + mean
        return x.view(x.shape[0], len(self.sources), self.audio_channels, x.shape[-1])


def _gate(glu: bool) -> nn.Module:
    """Activation after a rewrite conv: GLU over channels (halves them) or ReLU."""
    return nn.GLU(dim=1) if glu else nn.ReLU()
