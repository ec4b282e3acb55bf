#!/usr/bin/env bash
# Build an EPyMARL checkout at a pinned commit and a venv that runs its QMIX on mpe2's Spread, outside
# this repository (nothing of EPyMARL is vendored here).
#
#   bash benchmarks/parity/setup_epymarl.sh DEST [EPYMARL_SOURCE] [SMACLITE_SOURCE]
#
# DEST gets DEST/epymarl (the source at EPYMARL_COMMIT) and DEST/venv. The sources are git URLs or local
# clones (defaults: the GitHub repositories). Three things this commit needs that its requirements files
# do not give on Python 3.11 today:
#   * MPE has moved out of PettingZoo into mpe2 (PettingZoo's `pettingzoo/mpe` is now a stub that raises),
#     and EPyMARL registers `pz-mpe-*` by globbing `pettingzoo/**/*_v?.py`. The venv's `pettingzoo/mpe`
#     becomes a folder of links to mpe2's `*_v?.py` modules, so EPyMARL steps mpe2's simple_spread_v3,
#     the same code our side runs.
#   * `src/envs/__init__.py` imports smaclite unconditionally; it is installed without its `Rtree==1.0.0`
#     pin (no wheel for this Python), with its other dependencies.
#   * sacred imports pkg_resources, which setuptools 81 removed.
set -euo pipefail

EPYMARL_COMMIT="${EPYMARL_COMMIT:-cbc38c09588064eab978501d0f12c2cf58fa7fc2}"
DEST="${1:?usage: setup_epymarl.sh DEST [EPYMARL_SOURCE] [SMACLITE_SOURCE]}"
EPYMARL_SOURCE="${2:-https://github.com/uoe-agents/epymarl.git}"
SMACLITE_SOURCE="${3:-https://github.com/uoe-agents/smaclite.git}"
PYTHON="${PYTHON:-python3.11}"

mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

if [ ! -f "$DEST/epymarl/COMMIT" ]; then
    git clone --quiet "$EPYMARL_SOURCE" "$scratch/epymarl"
    mkdir -p "$DEST/epymarl"
    git -C "$scratch/epymarl" archive "$EPYMARL_COMMIT" | tar -x -C "$DEST/epymarl"
    echo "$EPYMARL_COMMIT" > "$DEST/epymarl/COMMIT"
fi

if [ ! -x "$DEST/venv/bin/python" ]; then
    "$PYTHON" -m venv "$DEST/venv"
    pip="$DEST/venv/bin/pip"
    "$pip" install --quiet torch==2.13.0
    "$pip" install --quiet "setuptools<81" sacred numpy pyyaml gymnasium pettingzoo mpe2 einops \
        scikit-learn pygame rtree
    git clone --quiet "$SMACLITE_SOURCE" "$scratch/smaclite"
    "$pip" install --quiet --no-deps "$scratch/smaclite"
    site="$("$DEST/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    rm -rf "$site/pettingzoo/mpe"
    mkdir "$site/pettingzoo/mpe"
    touch "$site/pettingzoo/mpe/__init__.py"
    ln -s "$site"/mpe2/*_v?.py "$site/pettingzoo/mpe/"
fi

"$DEST/venv/bin/python" -c "import smaclite, importlib; importlib.import_module('pettingzoo.mpe.simple_spread_v3')"
echo "EPyMARL $(cat "$DEST/epymarl/COMMIT") in $DEST/epymarl; python: $DEST/venv/bin/python"
