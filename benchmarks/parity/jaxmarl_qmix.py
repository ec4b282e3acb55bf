"""Run JaxMARL's own QMIX (`baselines/QLearning/qmix_rnn.py`) on our SMAX scenario and save its test curve.

Runs with the python of the venv that `setup_jaxmarl.sh DEST` builds (JaxMARL at a pinned commit, not part of
this repository):

  DEST/venv/bin/python benchmarks/parity/jaxmarl_qmix.py --jaxmarl-dir DEST/JaxMARL --steps 500000 \
      --seeds 0 1 2 --hidden 64 --out benchmarks/results/smax_anchor/jaxmarl_qmix_protoss_5v5.json

JaxMARL's code is imported, not changed. Its config is `config/config.yaml` + `config/alg/ql_rnn_smax.yaml`
(REW_SCALE 10, RAdam, 16 envs x 128 steps, 8 gradient steps of 32 trajectories per rollout, ...), with only
these values set here, each to run our scenario for our budget:
  * the env: `HeuristicEnemySMAX` on `smacv2_5_units` with our `env=smax/<race>_5v5` unit-type draw (the
    race's types, the enemy team a copy of the allies', softqmix.envs.smax.race_unit_type_distribution) and
    SMACv2's 200-step limit (`max_steps`); its ENV_KWARGS (see_enemy_actions, walls_cause_death,
    attack_mode closest) are kept;
  * TOTAL_TIMESTEPS = --steps; HIDDEN_SIZE = --hidden (its 512 is ~8x slower per step on this CPU);
  * TEST_NUM_STEPS = 201 and TEST_NUM_ENVS = --test-envs, so that every greedy test battle can end (its 128
    steps would drop battles longer than 128 steps from the win rate); TEST_INTERVAL = --test-every;
  * SEED = each of --seeds in turn, NUM_SEEDS = 1: one jitted training per seed, as JaxMARL's script runs
    with its default NUM_SEEDS 1 (vmapping two seeds in one call hung on this CPU: no progress, all threads
    asleep);
  * any value given with --set KEY=VALUE (each run's JSON records them), e.g. `--set LR=0.001`;
  * WANDB_MODE disabled, no SAVE_PATH. The metrics come back from the training scan itself: setup_jaxmarl.sh
    makes the update step return its metrics row (the one line it changes in JaxMARL's code).
The output JSON holds, per seed, the greedy test win rate and return at each test point (env steps), and
the wall time, split into compilation (the training function is compiled ahead of its run) and the run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO_SRC = Path(__file__).resolve().parents[2] / "src"
RACES = {  # our env=smax/<race>_5v5 unit-type draws (src/softqmix/conf/env/smax/)
    "protoss": (["stalker", "zealot"], [0.5, 0.5]),
    "terran": (["marine", "marauder"], [0.5, 0.5]),
    "zerg": (["zergling", "hydralisk"], [0.5, 0.5]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jaxmarl-dir", type=Path, required=True, help="DEST/JaxMARL from setup_jaxmarl.sh")
    parser.add_argument("--race", choices=sorted(RACES), default="protoss")
    parser.add_argument("--scenario", default="smacv2_5_units")
    parser.add_argument("--steps", type=float, default=500_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--test-every", type=float, default=0.05, help="fraction of training between tests")
    parser.add_argument("--test-envs", type=int, default=128)
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="other config values (YAML), e.g. LR=0.001"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    sys.path.insert(0, str(args.jaxmarl_dir / "baselines" / "QLearning"))
    sys.path.insert(0, str(REPO_SRC))  # our unit-type draw only (softqmix.envs.smax needs numpy + omegaconf)
    import jax
    from jaxmarl import make
    from jaxmarl.environments.smax import map_name_to_scenario
    from jaxmarl.wrappers.baselines import SMAXLogWrapper
    from omegaconf import OmegaConf

    from softqmix.envs.smax import race_unit_type_distribution

    qmix = importlib.import_module("qmix_rnn")
    conf = args.jaxmarl_dir / "baselines" / "QLearning" / "config"
    config = OmegaConf.to_container(OmegaConf.load(conf / "config.yaml"))
    config.update(OmegaConf.to_container(OmegaConf.load(conf / "alg" / "ql_rnn_smax.yaml")))
    config.update(
        {
            "MAP_NAME": args.scenario,
            "TOTAL_TIMESTEPS": args.steps,
            "HIDDEN_SIZE": args.hidden,
            "TEST_NUM_STEPS": 201,
            "TEST_NUM_ENVS": args.test_envs,
            "TEST_INTERVAL": args.test_every,
            "NUM_SEEDS": 1,
            "WANDB_MODE": "disabled",
            "SAVE_PATH": None,
        }
    )
    for item in args.set:
        key, value = item.split("=", 1)
        if key not in config:
            raise SystemExit(f"--set {item}: {key} is not a key of JaxMARL's QMIX config; valid: {sorted(config)}")
        config[key] = yaml.safe_load(value)
    env = make(config["ENV_NAME"], scenario=map_name_to_scenario(args.scenario), max_steps=200, **config["ENV_KWARGS"])
    smax = env._env
    types, weights = RACES[args.race]
    smax.unit_type_generator = race_unit_type_distribution(
        smax.num_allies,
        smax.num_enemies,
        smax.map_width,
        [smax.unit_type_names.index(name) for name in types],
        weights,
    )
    env = SMAXLogWrapper(env)

    curves, walls, compile_s, run_s = {}, {}, {}, {}
    for seed in args.seeds:
        config["SEED"] = seed
        started = time.time()
        keys = jax.random.split(jax.random.PRNGKey(seed), 1)
        # compiled ahead of the run, so that the two can be timed apart (the same work as calling the jitted
        # function, which would compile on its first call)
        compiled = jax.jit(jax.vmap(qmix.make_train(config, env))).lower(keys).compile()
        compiled_at = time.time()
        outs = jax.block_until_ready(compiled(keys))
        walls[str(seed)] = time.time() - started
        compile_s[str(seed)], run_s[str(seed)] = compiled_at - started, time.time() - compiled_at
        metrics = {k: np.asarray(v)[0] for k, v in outs["metrics"].items()}  # each [updates]
        # the test state is refreshed every TEST_INTERVAL of the updates (and repeated in between): keep those
        interval = int(config["NUM_UPDATES"] * config["TEST_INTERVAL"])
        points = [i for i, n in enumerate(metrics["update_steps"]) if int(n) % interval == 0]
        curves[str(seed)] = {
            "env_step": [int(metrics["env_step"][i]) for i in points],
            "test_win_rate": [float(metrics["test_returned_won_episode"][i]) for i in points],
            "test_return": [float(metrics["test_returned_episode_returns"][i]) for i in points],
        }
        print(
            f"seed {seed}: {walls[str(seed)]:.0f} s, win rate at {curves[str(seed)]['env_step'][-1]} steps "
            f"{curves[str(seed)]['test_win_rate'][-1]:.3f}",
            flush=True,
        )
        record = {
            "code": "jaxmarl",
            "algo": "qmix",
            "commit": (args.jaxmarl_dir / "COMMIT").read_text().strip(),
            "race": args.race,
            "scenario": args.scenario,
            "hidden": args.hidden,
            "set": args.set,
            "steps": args.steps,
            "seeds": [int(k) for k in curves],
            "wall_s_per_seed": walls,  # compilation included (one compile per seed)
            "compile_s_per_seed": compile_s,  # tracing and XLA compilation of the whole training function
            "run_s_per_seed": run_s,  # the compiled training alone
            "env_steps_per_s": args.steps * len(curves) / sum(walls.values()),
            "config": config,
            "curves": curves,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1, default=str))
        print(f"wrote {args.out}", flush=True)  # after every seed: a stopped run keeps the seeds it finished


if __name__ == "__main__":
    main()
