"""Side-by-side SMAX training speed: JaxMARL's QMIX and MAPPO and ours, one after another on this machine.

  python benchmarks/parity/jaxmarl_speed.py --jaxmarl-python DEST/venv/bin/python --jaxmarl-dir DEST/JaxMARL \
      --env smax/protoss_5v5 --algo qmix soft_qmix mappo --steps 100000 --out benchmarks/results/jaxmarl_speed.json

DEST comes from `setup_jaxmarl.sh DEST`. Each row is one training run of `--steps` env steps, timed from process
start to end (start-up and JAX compilation included on both sides), with the CPU seconds of the process and its
children, so `cores_used` = CPU / wall. Matched where the two codes allow:
  * QMIX (and Soft-QMIX, ours only): agent GRU hidden 64 on both; JaxMARL's `qmix_rnn.py` with its SMAX config
    (16 envs x 128 steps, 8 gradient steps on 32 trajectories per rollout: one per 256 env steps), run through
    jaxmarl_qmix.py; ours with 4 envs, batch 32 episodes, one update per 4 episodes (about one per 250-300 env
    steps on protoss 5v5), `trainer.torch_threads=1`, no periodic tests (one final test of 32 battles).
  * MAPPO: JaxMARL's `mappo_rnn_smax.py` with its config (128 envs x 128 steps, GRU 128), our scenario plugged
    into its env as jaxmarl_qmix.py does; ours with its defaults (8 episodes per rollout, GRU 64).
The JSON has one row per code and algorithm: code (ours | jaxmarl), algo, env_steps, wall_s, cpu_s, cores_used,
env_steps_per_s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

JAXMARL_MAPPO = r"""
import sys, time, json
sys.path.insert(0, sys.argv[1] + "/baselines/MAPPO")
sys.path.insert(0, sys.argv[2])
import jax, wandb
from omegaconf import OmegaConf
import mappo_rnn_smax as mappo
from jaxmarl.environments.smax import HeuristicEnemySMAX
from softqmix.envs.smax import race_unit_type_distribution
types, weights = json.loads(sys.argv[4]), json.loads(sys.argv[5])

def ours(**kwargs):  # the module's env class, with our unit-type draw and SMACv2's 200-step limit
    env = HeuristicEnemySMAX(max_steps=200, **kwargs)
    smax = env._env
    smax.unit_type_generator = race_unit_type_distribution(
        smax.num_allies, smax.num_enemies, smax.map_width,
        [smax.unit_type_names.index(t) for t in types], weights)
    return env

mappo.HeuristicEnemySMAX = ours
config = OmegaConf.to_container(OmegaConf.load(sys.argv[1] + "/baselines/MAPPO/config/mappo_homogenous_rnn_smax.yaml"))
config.update({"MAP_NAME": sys.argv[6], "TOTAL_TIMESTEPS": float(sys.argv[3]), "WANDB_MODE": "disabled"})
wandb.init(mode="disabled")
jax.block_until_ready(jax.jit(mappo.make_train(config))(jax.random.PRNGKey(0)))
"""


def timed(command: list[str], cwd: Path) -> tuple[float, float, int]:
    """Wall and CPU seconds (this child and its children) of one command, and its exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), proc.returncode


def row(code: str, algo: str, steps: int, wall: float, cpu: float, rc: int) -> dict[str, object]:
    result = {
        "code": code,
        "algo": algo,
        "env_steps": steps,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "cores_used": round(cpu / wall, 2),
        "env_steps_per_s": round(steps / wall, 1),
        "exit_code": rc,
    }
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jaxmarl-python", type=Path, required=True)
    parser.add_argument("--jaxmarl-dir", type=Path, required=True)
    parser.add_argument("--env", default="smax/protoss_5v5")
    parser.add_argument("--algo", nargs="+", default=["qmix", "soft_qmix", "mappo"])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    race, size = args.env.split("/")[1].split("_")
    scenario = {"5v5": "smacv2_5_units", "10v10": "smacv2_10_units"}[size]
    types = {"protoss": ["stalker", "zealot"], "terran": ["marine", "marauder"], "zerg": ["zergling", "hydralisk"]}
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for algo in args.algo:
            batch = [] if algo == "mappo" else ["algo.batch_size=32"]
            command = [sys.executable, "train.py", f"algo={algo}", f"env={args.env}", f"t_max={args.steps}"]
            command += [*batch, f"test_interval={args.steps}", "test_nepisode=32", "logger=csv"]
            command += ["trainer.torch_threads=1", "checkpoint.interval=0", f"hydra.run.dir={scratch}/ours_{algo}"]
            rows.append(row("ours", algo, args.steps, *timed(command, REPO)))
            if algo == "qmix":
                command = [str(args.jaxmarl_python), str(REPO / "benchmarks/parity/jaxmarl_qmix.py")]
                command += ["--jaxmarl-dir", str(args.jaxmarl_dir), "--race", race, "--scenario", scenario]
                command += ["--steps", str(args.steps), "--hidden", "64", "--test-every", "0.5"]
                command += ["--out", f"{scratch}/jaxmarl_qmix.json"]
                rows.append(row("jaxmarl", "qmix", args.steps, *timed(command, REPO)))
            if algo == "mappo":
                command = [str(args.jaxmarl_python), "-c", JAXMARL_MAPPO, str(args.jaxmarl_dir), str(REPO / "src")]
                command += [str(args.steps), json.dumps(types[race]), json.dumps([0.5, 0.5]), scenario]
                rows.append(row("jaxmarl", "mappo", args.steps, *timed(command, REPO)))
    record = {"env": args.env, "steps": args.steps, "machine": platform.processor() or platform.machine()}
    record.update({"cpus": os.cpu_count(), "rows": rows})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
