#!/usr/bin/env bash
# Build the Soft-QMIX authors' released code (a pymarl2 fork) at a pinned commit and a venv that runs its
# matrix game on the CPU, outside this repository (nothing of their code is vendored here).
#
#   bash benchmarks/parity/setup_softqmix_authors.sh DEST [SOURCE]
#
# DEST gets DEST/soft-qmix (their src/, README and LICENSE at AUTHORS_COMMIT, patched as listed below) and
# DEST/venv (torch 2.13 CPU, sacred, numpy, pyyaml, cloudpickle: what the matrix game path imports). SOURCE is a
# git URL or a local clone (default: the GitHub repository). benchmarks/parity/matrix_parity.py runs it with
# its own command line (`python src/main.py --config=qmix --env-config=one_step_matrix_game with ...`).
#
# The changes made to the DEST copy, each the smallest that lets the matrix game run here, each checked to
# apply exactly once (the script stops if the source does not read as expected):
#   1. envs/one_step_matrix_game.py, `payoff_values`: the release ships an easy game (12 on (A, A), -0.1 off
#      the diagonal, which QMIX also solves); the paper's Table 1 ([[8, -12, -12], [-12, 0, 0], [-12, 0, 0]],
#      the game our matrix env plays by default) is set instead. The commented-out tables in the file are
#      left as they are (none of them is Table 1: the nearest has 12, not 8, on (A, A)).
#   2. envs/one_step_matrix_game.py, line 44 `payoff_values[actions[0]][actions[1]]`: the parallel runner sends
#      each env worker an int array of shape [n_agents, 1], so `actions[0]` is a 1-element array and indexing
#      a Python list with it raises TypeError in every worker on the first step. The index becomes
#      `int(np.ravel(actions)[i])`: the same action, as an int.
#   3. envs/one_step_matrix_game.py, line 115 in `print_matrix_status`: the learner prints the Q_tot table every
#      `learner_log_interval` steps on this env, and the call `mixer(qvals, states)` lacks the mixer's third,
#      required argument `death_mask` (TypeError at the first log). `None` is passed: the mixer ignores it.
#   4. main.py: `collections.Mapping` was removed in Python 3.10 (torch 2.13 has no wheel for older ones);
#      `collections.abc.Mapping` is the same class.
#   5. Imports of packages the matrix game never uses become optional (`try: ... except ImportError`, the name
#      set to None): `wandb` (main.py, where it is unused, and utils/logging.py, used only with use_wandb=True,
#      which the driver turns off), `smacv2` (envs/__init__.py, run/run.py: StarCraft II only), the stag hunt
#      env (envs/__init__.py; it imports pygame). components/action_selectors.py's
#      `from matplotlib.pyplot import xcorr` is deleted: `xcorr` is never used. Installing these instead would
#      need StarCraft's smacv2 from GitHub and a few hundred MB of packages for nothing that runs.
# Nothing else is changed: the learner, the mixer, the action selector, the runner and the configs are theirs.
# Their configs are not edited either; the driver passes every setting on the command line.
set -euo pipefail

AUTHORS_COMMIT="${AUTHORS_COMMIT:-649d7d3ca0f40e974e31b44d4bafaf6e66965994}"
DEST="${1:?usage: setup_softqmix_authors.sh DEST [SOURCE]}"
SOURCE="${2:-https://github.com/WentseChen/Soft-QMIX.git}"
PYTHON="${PYTHON:-python3.11}"

mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

if [ ! -f "$DEST/soft-qmix/COMMIT" ]; then
    rm -rf "$DEST/soft-qmix"
    git clone --quiet --no-checkout "$SOURCE" "$scratch/soft-qmix"
    mkdir -p "$DEST/soft-qmix"
    git -C "$scratch/soft-qmix" archive "$AUTHORS_COMMIT" src README.md LICENSE | tar -x -C "$DEST/soft-qmix"
    find "$DEST/soft-qmix" -name __pycache__ -type d -prune -exec rm -rf {} +  # their Python 3.8 bytecode
    "$PYTHON" - "$DEST/soft-qmix/src" <<'PATCH'
import sys
from pathlib import Path

src = Path(sys.argv[1])


def replace(path: str, old: str, new: str) -> None:
    file = src / path
    text = file.read_text()
    if text.count(old) != 1:
        sys.exit(f"setup_softqmix_authors.sh: {path} does not hold {old!r} exactly once; wrong commit?")
    file.write_text(text.replace(old, new))


def optional(path: str, line: str, names: list[str]) -> None:
    """`line` (an import) becomes `try: line / except ImportError: names = None`."""
    nones = "".join(f"    {name} = None\n" for name in names)
    replace(path, line + "\n", f"try:\n    {line}\nexcept ImportError:  # harness: not needed on the matrix game\n{nones}")


# 1. the paper's Table 1
replace(
    "envs/one_step_matrix_game.py",
    "payoff_values = [[12, -0.1, -0.1],\n                    [-0.1, 0, 0],\n                    [-0.1, 0, 0]]",
    "payoff_values = [[8, -12, -12],  # harness: the paper's Table 1\n"
    "                    [-12, 0, 0],\n                    [-12, 0, 0]]",
)
# 2. a worker receives the actions as an int array [n_agents, 1]
replace(
    "envs/one_step_matrix_game.py",
    "reward = payoff_values[actions[0]][actions[1]]",
    "reward = payoff_values[int(np.ravel(actions)[0])][int(np.ravel(actions)[1])]  # harness: [n, 1] array",
)
# 3. the mixer's death_mask argument
replace(
    "envs/one_step_matrix_game.py",
    'global_q = mixer(qvals, batch["state"][:batch_size, 0:1]).mean()',
    'global_q = mixer(qvals, batch["state"][:batch_size, 0:1], None).mean()  # harness: death_mask',
)
# 4. Python >= 3.10
replace("main.py", "import collections\n", "import collections.abc\n")
replace("main.py", "isinstance(v, collections.Mapping)", "isinstance(v, collections.abc.Mapping)")
# 5. imports the matrix game never uses
replace("main.py", "import wandb\n", "")
optional("utils/logging.py", "import wandb", ["wandb"])
optional(
    "envs/__init__.py",
    "from smacv2.env import StarCraft2Env, StarCraftCapabilityEnvWrapper",
    ["StarCraft2Env", "StarCraftCapabilityEnvWrapper"],
)
optional("envs/__init__.py", "from .stag_hunt import StagHunt", ["StagHunt"])
optional("run/run.py", "from smacv2.env import StarCraft2Env", ["StarCraft2Env"])
replace("components/action_selectors.py", "from matplotlib.pyplot import xcorr\n", "")
PATCH
    echo "$AUTHORS_COMMIT" > "$DEST/soft-qmix/COMMIT"
fi

if [ ! -x "$DEST/venv/bin/python" ]; then
    "$PYTHON" -m venv "$DEST/venv"
    pip="$DEST/venv/bin/pip"
    "$pip" install --quiet torch==2.13.0  # first: a looser pin would pull a CUDA build
    "$pip" install --quiet "setuptools<81" sacred numpy pyyaml cloudpickle  # sacred imports pkg_resources
fi

(cd "$DEST/soft-qmix/src" && "$DEST/venv/bin/python" -c "import envs, learners, runners, controllers, run")
echo "Soft-QMIX (authors) $(cat "$DEST/soft-qmix/COMMIT") in $DEST/soft-qmix; python: $DEST/venv/bin/python"
