#!/usr/bin/env bash
# Build a HARL checkout at a pinned commit and a venv that runs its HASAC on mpe2's Spread, outside this
# repository (nothing of HARL is vendored here), for the side-by-side with algo=hasac (docs/algorithms/hasac.md).
# HARL's SMACv2 wrapper also needs gym, smacv2 and StarCraft II, which this script does not install.
#
#   bash benchmarks/parity/setup_harl.sh DEST [HARL_SOURCE]
#
# DEST gets DEST/harl (the source at HARL_COMMIT, installed editable) and DEST/venv. HARL_SOURCE is a git URL or
# a local clone (default: the GitHub repository). torch==2.13.0 goes in first and alone: a looser requirement
# (HARL's setup.py asks for torch>=1.9.0) would fetch a multi-GB CUDA build. What this commit needs on
# Python 3.11 with today's packages, applied to the exported source:
#   * numpy 2 has no `np.int` / `np.bool` aliases (the off-policy runner's evaluation builds its length counter
#     with dtype=np.int; the SMAC code uses both): every `np.int` / `np.bool` under harl/ becomes `int` / `bool`.
#   * MPE has moved out of PettingZoo into mpe2 (PettingZoo's `pettingzoo/mpe` is now a stub that raises), and
#     HARL's MPE wrapper imports `pettingzoo.mpe.<scenario>` for the scenarios it accepts (simple_spread_v2,
#     retired since): the venv's `pettingzoo/mpe` becomes a folder of links to mpe2's `*_v?.py` modules, plus
#     `simple_spread_v2.py` -> mpe2's `simple_spread_v3.py`, so HARL's `--scenario simple_spread_v2` steps mpe2's
#     Spread, the same code our side runs.
#   * PettingZoo's parallel `reset` returns (observations, infos) since 1.22; HARL's MPE wrapper unwraps its
#     result as the observations: it takes `[0]` of it.
#   * `harl/envs/__init__.py` imports absl's flags for every env; absl-py is installed. supersuit (HARL's MPE
#     wrapper pads spaces with it), tensorboardX, setproctitle and pyyaml are HARL's other imports.
# Then an import check of the patched MPE wrapper. A short HASAC run (200 warm-up steps, then 1000 steps and
# 1000 updates; it ran to its end here after this script built DEST from a local clone at HARL_COMMIT):
#   cd DEST/harl && ../venv/bin/python examples/train.py --algo hasac --env pettingzoo_mpe --exp_name smoke \
#       --scenario simple_spread_v2 --continuous_actions False --num_env_steps 1000 --warmup_steps 200 \
#       --n_rollout_threads 1 --batch_size 64 --hidden_sizes "[32,32]" --use_eval False --log_dir /tmp/harl_smoke
set -euo pipefail

HARL_COMMIT="${HARL_COMMIT:-d539bad20f677bc4ce9fa200fa5de31b5f0b9d37}"
DEST="${1:?usage: setup_harl.sh DEST [HARL_SOURCE]}"
HARL_SOURCE="${2:-https://github.com/PKU-MARL/HARL.git}"
PYTHON="${PYTHON:-python3.11}"

mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

if [ ! -f "$DEST/harl/COMMIT" ]; then
    git clone --quiet --no-checkout "$HARL_SOURCE" "$scratch/harl"  # only `git archive` reads it
    mkdir -p "$DEST/harl"
    # the source only: the dexterous-hands assets (Git LFS, not needed for MPE or SMACv2) stay out
    git -C "$scratch/harl" archive "$HARL_COMMIT" -- setup.py examples harl ':!harl/envs/dexhands/DexterousHands/assets' \
        | tar -x -C "$DEST/harl"
    find "$DEST/harl/harl" -name '*.py' -exec sed -i -E 's/\bnp\.int\b/int/g; s/\bnp\.bool\b/bool/g' {} +
    wrapper="$DEST/harl/harl/envs/pettingzoo_mpe/pettingzoo_mpe_env.py"
    grep -q 'self.env.reset(seed=self._seed))' "$wrapper"
    sed -i 's/self\.unwrap(self\.env\.reset(seed=self\._seed))/self.unwrap(self.env.reset(seed=self._seed)[0])/' "$wrapper"
    echo "$HARL_COMMIT" > "$DEST/harl/COMMIT"
fi

if [ ! -x "$DEST/venv/bin/python" ]; then
    "$PYTHON" -m venv "$DEST/venv"
    pip="$DEST/venv/bin/pip"
    "$pip" install --quiet torch==2.13.0
    "$pip" install --quiet numpy pyyaml tensorboardX setproctitle absl-py gymnasium pettingzoo mpe2 supersuit
    "$pip" install --quiet --no-deps -e "$DEST/harl"
    site="$("$DEST/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    rm -rf "$site/pettingzoo/mpe"
    mkdir "$site/pettingzoo/mpe"
    touch "$site/pettingzoo/mpe/__init__.py"
    ln -s "$site"/mpe2/*_v?.py "$site/pettingzoo/mpe/"
    ln -s "$site/mpe2/simple_spread_v3.py" "$site/pettingzoo/mpe/simple_spread_v2.py"
fi

"$DEST/venv/bin/python" - <<'EOF'
from harl.envs.pettingzoo_mpe.pettingzoo_mpe_env import PettingZooMPEEnv

env = PettingZooMPEEnv({"scenario": "simple_spread_v2", "continuous_actions": False})
obs, state, avail = env.reset()
assert len(obs) == 3 and len(avail) == 3, (len(obs), len(avail))
env.close()
EOF
echo "HARL $(cat "$DEST/harl/COMMIT") in $DEST/harl; python: $DEST/venv/bin/python"
