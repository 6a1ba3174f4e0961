"""Model cards: one declarative table of the named pretrained models stemforge can download.

Each :class:`ModelCard` says what a name (``-n htdemucs``) stands for: the files to fetch (a path
relative to the download root, and the sha256 prefix that the official file names carry), how a
bag combines them (per-model, per-source weights and a segment override), the stems, an
approximate download size, the licence as far as it is known, the default segment and the
architecture. :mod:`stemforge.pretrained.hub` turns a card into files in the cache folder.

The official files live under :data:`OFFICIAL_ROOT_URL` (``STEMFORGE_MODEL_URL`` replaces it); the
paths and bag definitions are those of Demucs 4.1.0 (``demucs/remote/files.txt`` and
``demucs/remote/*.yaml``) and the Demucs 2 weights under ``v3.0/``.

Sizes are approximate (MB = 10^6 bytes); ``None`` means not known.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

OFFICIAL_ROOT_URL = "https://dl.fbaipublicfiles.com/demucs/"

FOUR_STEMS: tuple[str, ...] = ("drums", "bass", "other", "vocals")
SIX_STEMS: tuple[str, ...] = ("drums", "bass", "other", "vocals", "guitar", "piano")

# What is known about the licence of the official Demucs weights; nothing here is invented.
_DEMUCS_TERMS = (
    "Demucs code: MIT (https://github.com/facebookresearch/demucs). Weights: released by Meta "
    "with that repository; no separate licence for the weights is stated there, see upstream "
    "before any commercial use. Training data: {data}.")
_MUSDB = "MUSDB18-HQ (a research-use data set; each track has its own licence)"
_MUSDB_PLUS = _MUSDB + " plus about 800 extra songs that are not public"


def demucs_licence(data: str) -> str:
    """The licence text of an official Demucs model trained on ``data``."""
    return _DEMUCS_TERMS.format(data=data)


@dataclass(frozen=True)
class ModelFile:
    """A model file; ``path`` is relative to the download root (``"v3.0/demucs-e07c671f.th"``)."""

    path: str
    sha256_prefix: str
    size_mb: Optional[float] = None

    @property
    def filename(self) -> str:
        """The file's name in the cache folder (the last component of ``path``)."""
        return self.path.rsplit("/", 1)[-1]

    @property
    def signature(self) -> str:
        """The name of the model in a folder: ``955717e8-8726e21a.th`` -> ``955717e8``."""
        return self.filename.rsplit(".", 1)[0].rsplit("-", 1)[0]


@dataclass(frozen=True)
class ModelCard:
    """A named pretrained model (a single file, or a bag of several)."""

    name: str
    architecture: str
    sources: tuple[str, ...]
    files: tuple[ModelFile, ...]
    licence: str
    description: str
    default_segment: Optional[float] = None
    is_bag: bool = True
    bag_weights: Optional[tuple[tuple[float, ...], ...]] = None
    bag_segment: Optional[float] = None
    quantized: bool = False
    licence_short: str = "code MIT; weights: see upstream"

    @property
    def size_mb(self) -> Optional[float]:
        """Approximate download size: the sum of the files' sizes, ``None`` if one is unknown."""
        sizes = [file.size_mb for file in self.files]
        return None if None in sizes else round(sum(sizes), 1)  # type: ignore[arg-type]


def _files(root: str, *names: str, size_mb: Optional[float] = None) -> tuple[ModelFile, ...]:
    """``ModelFile``s for official names ``<sig>-<sha8>.th`` under ``root``."""
    return tuple(ModelFile(f"{root}{name}", name.rsplit(".", 1)[0].rsplit("-", 1)[1], size_mb)
                 for name in names)


_HT = "hybrid_transformer/"
_MDX = "mdx_final/"
_V2 = "v3.0/"
_ONE_HOT_4 = ((1.0, 0.0, 0.0, 0.0), (0.0, 1.0, 0.0, 0.0),
              (0.0, 0.0, 1.0, 0.0), (0.0, 0.0, 0.0, 1.0))
_MDX_A_WEIGHTS = ((1.0, 1.0, 0.0, 0.0), (0.0, 1.0, 0.0, 0.0),
                  (1.0, 0.0, 1.0, 1.0), (1.0, 0.0, 1.0, 1.0))
_HTDEMUCS_SEGMENT = 7.8  # 39/5 s, the training length of the Hybrid Transformer models
_V2_SEGMENT = 40.0       # Demucs 2 separates in 40 s chunks


CARDS: dict[str, ModelCard] = {card.name: card for card in (
    ModelCard(
        name="htdemucs", architecture="HTDemucs", sources=FOUR_STEMS,
        files=_files(_HT, "955717e8-8726e21a.th", size_mb=84.1),
        licence=demucs_licence(_MUSDB_PLUS),
        description="Hybrid Transformer Demucs (v4), the Demucs default",
        default_segment=_HTDEMUCS_SEGMENT),
    ModelCard(
        name="htdemucs_ft", architecture="HTDemucs", sources=FOUR_STEMS,
        files=_files(_HT, "f7e0c4bc-ba3fe64a.th", "d12395a8-e57c48e6.th", "92cfc3b6-ef3bcb9c.th",
                     "04573f0d-f3cf25b2.th", size_mb=84.1),
        licence=demucs_licence(_MUSDB_PLUS),
        description="htdemucs fine-tuned per source: a bag of 4, 4x slower, a bit better",
        default_segment=_HTDEMUCS_SEGMENT, bag_weights=_ONE_HOT_4),
    ModelCard(
        name="htdemucs_6s", architecture="HTDemucs", sources=SIX_STEMS,
        files=_files(_HT, "5c90dfd2-34c22ccb.th", size_mb=55.0),
        licence=demucs_licence("see upstream (MUSDB18-HQ plus extra songs with guitar and piano "
                               "stems, not public)"),
        description="htdemucs with guitar and piano stems (the piano stem is weak)",
        default_segment=_HTDEMUCS_SEGMENT),
    ModelCard(
        name="hdemucs_mmi", architecture="HDemucs", sources=FOUR_STEMS,
        files=_files(_HT, "75fc33f5-1941ce65.th", size_mb=167.4),
        licence=demucs_licence(_MUSDB_PLUS),
        description="Hybrid Demucs (v3) retrained on MUSDB18-HQ and extra songs",
        default_segment=44.0, bag_segment=44.0),
    ModelCard(
        name="mdx", architecture="Demucs/HDemucs (see upstream)", sources=FOUR_STEMS,
        files=_files(_MDX, "0d19c1c6-0f06f20e.th", "7ecf8ec1-70f50cc9.th", "c511e2ab-fe698775.th",
                     "7d865c68-3d5dd56b.th"),
        licence=demucs_licence(_MUSDB),
        description="MDX 2021 challenge, track A winner: a bag of 4 trained on MUSDB18-HQ only",
        default_segment=44.0, bag_weights=_MDX_A_WEIGHTS, bag_segment=44.0),
    ModelCard(
        name="mdx_extra", architecture="HDemucs", sources=FOUR_STEMS,
        files=_files(_MDX, "e51eebcc-c1b80bdd.th", "a1d90b5c-ae9d2452.th", "5d2d6c55-db83574e.th",
                     "cfa93e08-61801ae1.th", size_mb=167.4),
        licence=demucs_licence(_MUSDB + " (train and test sets) plus extra songs that are not "
                               "public"),
        description="MDX 2021 challenge, track B (2nd): a bag of 4 trained with extra data",
        default_segment=44.0, bag_segment=44.0),
    ModelCard(
        name="mdx_q", architecture="Demucs/HDemucs (see upstream), diffq-quantized",
        sources=FOUR_STEMS,
        files=_files(_MDX, "6b9c2ca1-3fd82607.th", "b72baf4e-8778635e.th", "42e558d4-196e0e1b.th",
                     "305bc58f-18378783.th"),
        licence=demucs_licence(_MUSDB),
        description="mdx quantized with diffq (smaller download; stemforge cannot load it)",
        default_segment=44.0, bag_weights=_MDX_A_WEIGHTS, bag_segment=44.0, quantized=True),
    ModelCard(
        name="mdx_extra_q", architecture="HDemucs, diffq-quantized", sources=FOUR_STEMS,
        files=(ModelFile(f"{_MDX}83fc094f-4a16d450.th", "4a16d450", 50.8),
               ModelFile(f"{_MDX}464b36d7-e5a9386e.th", "e5a9386e", 38.9),
               ModelFile(f"{_MDX}14fc6a69-a89dd0ee.th", "a89dd0ee", 38.5),
               ModelFile(f"{_MDX}7fd6ef75-a905dd85.th", "a905dd85", 39.4)),
        licence=demucs_licence(_MUSDB + " (train and test sets) plus extra songs that are not "
                               "public"),
        description="mdx_extra quantized with diffq (smaller download; stemforge cannot load it)",
        default_segment=44.0, bag_segment=44.0, quantized=True),
    ModelCard(
        name="demucs", architecture="DemucsV2", sources=FOUR_STEMS,
        files=_files(_V2, "demucs-e07c671f.th", size_mb=1063.0),
        licence=demucs_licence("MUSDB18 (research-use data)"),
        description="Demucs 2 waveform U-Net (2019), 64 channels",
        default_segment=_V2_SEGMENT, is_bag=False),
    ModelCard(
        name="demucs_extra", architecture="DemucsV2", sources=FOUR_STEMS,
        files=_files(_V2, "demucs_extra-3646af93.th", size_mb=1063.0),
        licence=demucs_licence("MUSDB18 (research-use data) plus about 150 extra songs that are "
                               "not public"),
        description="Demucs 2 trained with extra data",
        default_segment=_V2_SEGMENT, is_bag=False),
    ModelCard(
        name="demucs48_hq", architecture="DemucsV2", sources=FOUR_STEMS,
        files=_files(_V2, "demucs48_hq-28a1282c.th", size_mb=598.0),
        licence=demucs_licence(_MUSDB),
        description="Demucs 2 with 48 channels, trained on MUSDB18-HQ",
        default_segment=_V2_SEGMENT, is_bag=False),
)}


class UnknownModelError(LookupError):
    """No model card has that name."""


def card_names(cards: Optional[Mapping[str, ModelCard]] = None) -> list[str]:
    """The known model names, in table order."""
    return list(CARDS if cards is None else cards)


def get_card(name: str, cards: Optional[Mapping[str, ModelCard]] = None) -> ModelCard:
    """The card called ``name`` (in ``cards``, default the official table)."""
    table = CARDS if cards is None else cards
    try:
        return table[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; known models: "
                                f"{', '.join(table)}") from None
