#!/usr/bin/env bash
# Build a JaxMARL checkout at a pinned commit and a venv that runs its QLearning and MAPPO baselines on SMAX,
# outside this repository (nothing of JaxMARL is vendored here).
#
#   bash benchmarks/parity/setup_jaxmarl.sh DEST [JAXMARL_SOURCE]
#
# DEST gets DEST/JaxMARL (the source at JAXMARL_COMMIT, with its baselines/) and DEST/venv (jaxmarl installed
# from that source with its `algs` extra: optax, distrax, flashbax, wandb, hydra). JAXMARL_SOURCE is a git
# URL or a local clone (default: the GitHub repository). JAX runs on the CPU (jax's default wheel).
# One line of JaxMARL's code is changed, in the DEST copy only: baselines/QLearning/qmix_rnn.py's update step
# returns its metrics row (`return runner_state, metrics` instead of `None`), so the training scan hands back
# the test win rate of every update. The script otherwise reports metrics only through a wandb callback
# (`jax.debug.callback` under `vmap`), which hung on this CPU (no progress for minutes, every thread asleep).
# The driver next to this file (jaxmarl_qmix.py) imports the module and only sets config values, each stated
# where it is set.
set -euo pipefail

JAXMARL_COMMIT="${JAXMARL_COMMIT:-c793d095618c6d3edfb5632802348f57b70a4b94}"
DEST="${1:?usage: setup_jaxmarl.sh DEST [JAXMARL_SOURCE]}"
JAXMARL_SOURCE="${2:-https://github.com/FLAIROx/JaxMARL.git}"
PYTHON="${PYTHON:-python3.11}"

mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

if [ ! -f "$DEST/JaxMARL/COMMIT" ]; then
    # only the package, its build files and the baselines: the docs' GIFs are large and not needed
    git clone --quiet --no-checkout "$JAXMARL_SOURCE" "$scratch/JaxMARL"
    mkdir -p "$DEST/JaxMARL"
    git -C "$scratch/JaxMARL" archive "$JAXMARL_COMMIT" pyproject.toml README.md LICENSE jaxmarl baselines \
        | tar -x -C "$DEST/JaxMARL"
    echo "$JAXMARL_COMMIT" > "$DEST/JaxMARL/COMMIT"
fi
qmix="$DEST/JaxMARL/baselines/QLearning/qmix_rnn.py"
grep -q "return runner_state, metrics" "$qmix" || sed -i 's/            return runner_state, None$/            return runner_state, metrics/' "$qmix"
grep -q "return runner_state, metrics" "$qmix"

if [ ! -x "$DEST/venv/bin/python" ]; then
    "$PYTHON" -m venv "$DEST/venv"
    "$DEST/venv/bin/pip" install --quiet "$DEST/JaxMARL[algs]"
fi

"$DEST/venv/bin/python" -c "import jaxmarl, flashbax, optax, distrax; print('jaxmarl', jaxmarl.__version__)"
echo "JaxMARL $(cat "$DEST/JaxMARL/COMMIT") in $DEST/JaxMARL; python: $DEST/venv/bin/python"
