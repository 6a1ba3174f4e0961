#!/usr/bin/env bash
# Fetch test oracles that must NOT be installed next to demucs 4.1.0.
#
# demucs 2.0.3 (the 2019 waveform model, `-n demucs`) is only needed as source: the
# parity tests load its `demucs/model.py` with importlib. This script downloads the
# sdist from PyPI (no dependencies, nothing installed) and unpacks it to
# `<repo>/.cache/demucs-2.0.3`, so that `.cache/demucs-2.0.3/demucs/model.py` exists.
# Idempotent: does nothing when the file is already there.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_dir="${repo_root}/.cache"
version="2.0.3"
target="${cache_dir}/demucs-${version}"

if [[ -f "${target}/demucs/model.py" ]]; then
    echo "demucs ${version} source already present in ${target}"
    exit 0
fi

python_bin="${PYTHON:-python}"
tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT

"${python_bin}" -m pip download --quiet --no-deps --no-binary :all: "demucs==${version}" -d "${tmp}"
archive="$(ls "${tmp}"/demucs-${version}.tar.gz)"

mkdir -p "${cache_dir}"
rm -rf "${target}"
tar -xzf "${archive}" -C "${tmp}"
mv "${tmp}/demucs-${version}" "${target}"
test -f "${target}/demucs/model.py"
echo "demucs ${version} source unpacked to ${target}"
