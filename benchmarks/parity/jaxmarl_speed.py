"""Side-by-side SMAX training speed: JaxMARL's QMIX and MAPPO and ours, one after another on this machine.

  python benchmarks/parity/jaxmarl_speed.py --jaxmarl-python DEST/venv/bin/python --jaxmarl-dir DEST/JaxMARL \
      --env smax/protoss_5v5 --algo qmix soft_qmix mappo --steps 100000 --repeats 3 \
      --out benchmarks/results/jaxmarl_speed.json

DEST comes from `setup_jaxmarl.sh DEST`. Each training run goes for `--steps` env steps and is timed from process
start to end (imports, start-up and JAX compilation included on both sides), with the CPU seconds of the process
and its children, so `cores_used` = CPU / wall. Every configuration runs twice with a fresh JAX persistent
compilation cache: the first run (`cache: cold`) compiles everything and fills the cache, the second
(`cache: warm`) loads the compiled functions, which is what every later run on a machine (and every run of a sweep
after the first) sees. Ours uses the cache by default (env.jax_cache_dir); JaxMARL's scripts do not set one, so
the harness gives them the same cache through JAX_COMPILATION_CACHE_DIR. JaxMARL's rows also split the wall time
into compilation of its training function (`compile_s`, compiled ahead of the run) and the run itself (`run_s`);
ours report the time inside the training loop (`fit_s`: collection, updates, tests, and any compilation of SMAX's
functions, which happens on their first call).

Matched where the two codes allow (`--matched`, the default; `--ours-defaults` runs ours with its plain defaults):
  * QMIX (and Soft-QMIX, ours only): agent GRU hidden 64 and batches of 32 trajectories on both. JaxMARL's
    `qmix_rnn.py` with its SMAX config runs 16 envs x 128 steps per rollout and 8 gradient steps per rollout: one
    per 256 env steps (jaxmarl_qmix.py). Ours: 16 envs (batch_size_run=16), one update per 256 env steps
    (algo.env_steps_per_update=256), collection overlapped with learning in a spawned process
    (pool.collection=process; `thread` until 2026-12-07, whose rows in older JSON say so in `overrides`), and one
    torch thread for the learner (`trainer.torch_threads=1`: the other core is the collector's).
  * MAPPO: JaxMARL's `mappo_rnn_smax.py` with its config (128 envs x 128 steps per rollout, 4 epochs x 4
    minibatches, GRU and layers 128), our scenario plugged into its env as jaxmarl_qmix.py does. Ours: 128 episodes
    per rollout from 64 envs, 4 epochs x 4 minibatches, GRU and critic 128. SMAX battles last about 50-70 steps, so
    our rollouts hold about half of JaxMARL's 16384 env steps and ours makes about twice its gradient steps per
    env step. On-policy, our collection and updates take turns, so the update gets both cores
    (`trainer.torch_threads=2`; 1 until 2026-12-07).
  * Tests: ours 32 greedy battles at the start and at the end; JaxMARL's QMIX 128 greedy battles twice (its
    TEST_INTERVAL 0.5); JaxMARL's MAPPO none.
`--repeats N` runs the warm configuration N times per code, ours and JaxMARL's taking turns (Soft-QMIX's turns are
with JaxMARL's QMIX, whose cache the QMIX rows filled): this machine's speed drifts by tens of percent over minutes
(JaxMARL's warm QMIX took 37 to 55 s in different passes), so a ratio counts only between runs made back to back.
The JSON has one row per run: code (ours | jaxmarl), algo, cache, repeat (warm runs; JaxMARL's also say `beside`:
which of our algorithms they took turns with), env_steps, wall_s, cpu_s,
cores_used, env_steps_per_s (= env_steps / wall_s), and the split above; `warm_ratios` has ours ÷ JaxMARL's env
steps/s for each repeat and their median. `load_before` is the machine's 1-minute load average when the run started
(other work on the machine slows both codes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
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
started = time.time()
key = jax.random.PRNGKey(0)
compiled = jax.jit(mappo.make_train(config)).lower(key).compile()
compiled_at = time.time()
jax.block_until_ready(compiled(key))
print(json.dumps({"compile_s": compiled_at - started, "run_s": time.time() - compiled_at}))
"""

OURS_MATCHED = {
    "qmix": [
        "algo.batch_size=32",
        "batch_size_run=16",
        "algo.env_steps_per_update=256",
        "pool.collection=process",
        "trainer.torch_threads=1",
    ],
    "mappo": [
        "trainer.torch_threads=2",
        "batch_size_run=64",
        "algo.rollout_episodes=128",
        "algo.ppo_epochs=4",
        "algo.num_mini_batch=4",
        "algo.rnn_hidden_dim=128",
        "algo.critic_hidden_dim=128",
    ],
}
OURS_MATCHED["soft_qmix"] = OURS_MATCHED["qmix"]
OURS_DEFAULTS = {"qmix": ["algo.batch_size=32"], "soft_qmix": ["algo.batch_size=32"], "mappo": []}


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, int, str]:
    """Wall and CPU seconds (this child and its children) of one command, its exit code and its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, **env})
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), proc.returncode, proc.stdout


def row(code: str, algo: str, cache: str, steps: int, wall: float, cpu: float, rc: int, **split: float) -> dict:
    result = {
        "code": code,
        "algo": algo,
        "cache": cache,
        "env_steps": steps,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "cores_used": round(cpu / wall, 2),
        "env_steps_per_s": round(steps / wall, 1),
        **{k: round(v, 1) for k, v in split.items()},
        "exit_code": rc,
    }
    return result


def run_ours(
    algo: str, args: argparse.Namespace, scratch: Path, cache_dir: Path, overrides: list[str], cache: str
) -> dict:
    """One timed run of ours; `cache` only labels the row (cold: `cache_dir` is still empty)."""
    run_dir = scratch / f"ours_{algo}_{cache}"
    command = [sys.executable, "train.py", f"algo={algo}", f"env={args.env}", f"t_max={args.steps}", *overrides]
    command += [f"test_interval={args.steps}", "test_nepisode=32", "logger=csv"]
    command += ["checkpoint.interval=0", f"env.jax_cache_dir={cache_dir}", f"hydra.run.dir={run_dir}"]
    load = os.getloadavg()[0]
    wall, cpu, rc, _ = timed(command, REPO, {"JAX_PLATFORMS": "cpu"})
    summary = json.loads((run_dir / "summary.json").read_text()) if rc == 0 else {}
    steps = summary.get("env_steps", args.steps)
    result = row("ours", algo, cache, steps, wall, cpu, rc, fit_s=summary.get("wall_seconds", float("nan")))
    result.update(load_before=round(load, 2), updates=summary.get("updates"), overrides=overrides)
    subprocess.run(["rm", "-rf", str(run_dir)], check=False)  # the next repeat writes the same dir
    return result


def run_jaxmarl(
    algo: str, args: argparse.Namespace, scratch: Path, cache_dir: Path, race: str, scenario: str, cache: str
) -> dict:
    """One timed run of JaxMARL's QMIX or MAPPO script with `cache_dir` as its JAX compilation cache."""
    types = {"protoss": ["stalker", "zealot"], "terran": ["marine", "marauder"], "zerg": ["zergling", "hydralisk"]}
    env = {"JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": str(cache_dir)}
    load = os.getloadavg()[0]
    if algo == "qmix":
        out = scratch / f"jaxmarl_qmix_{cache}.json"
        command = [str(args.jaxmarl_python), str(REPO / "benchmarks/parity/jaxmarl_qmix.py")]
        command += ["--jaxmarl-dir", str(args.jaxmarl_dir), "--race", race, "--scenario", scenario]
        command += ["--steps", str(args.steps), "--hidden", "64", "--test-every", "0.5", "--out", str(out)]
        wall, cpu, rc, _ = timed(command, REPO, env)
        record = json.loads(out.read_text()) if rc == 0 else {}
        split = {k: record.get(f"{k}_per_seed", {}).get("0", float("nan")) for k in ("compile_s", "run_s")}
    else:
        command = [str(args.jaxmarl_python), "-c", JAXMARL_MAPPO, str(args.jaxmarl_dir), str(REPO / "src")]
        command += [str(args.steps), json.dumps(types[race]), json.dumps([0.5, 0.5]), scenario]
        wall, cpu, rc, stdout = timed(command, REPO, env)
        split = json.loads(stdout.strip().splitlines()[-1]) if rc == 0 else {}
    result = row("jaxmarl", algo, cache, args.steps, wall, cpu, rc, **split)
    result["load_before"] = round(load, 2)
    return result


def warm_ratios(rows: list[dict]) -> list[dict]:
    """Ours ÷ JaxMARL's env steps/s for each warm repeat (the two runs of a repeat ran back to back), and their
    median: the machine's speed drifts by tens of percent over minutes, so only adjacent runs compare."""
    out = []
    for algo in dict.fromkeys(r["algo"] for r in rows if r["code"] == "ours"):
        anchor = "mappo" if algo == "mappo" else "qmix"
        ours = {r["repeat"]: r for r in rows if r["code"] == "ours" and r["algo"] == algo and r["cache"] == "warm"}
        theirs = {
            r["repeat"]: r
            for r in rows
            if r["code"] == "jaxmarl" and r["algo"] == anchor and r["cache"] == "warm" and r["beside"] == algo
        }
        ratios = [
            round(ours[k]["env_steps_per_s"] / theirs[k]["env_steps_per_s"], 3)
            for k in sorted(ours)
            if k in theirs and ours[k]["exit_code"] == 0 and theirs[k]["exit_code"] == 0
        ]
        if ratios:
            out.append({"ours": algo, "jaxmarl": anchor, "warm_ratios": ratios, "median": statistics.median(ratios)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jaxmarl-python", type=Path, required=True)
    parser.add_argument("--jaxmarl-dir", type=Path, required=True)
    parser.add_argument("--env", default="smax/protoss_5v5")
    parser.add_argument("--algo", nargs="+", default=["qmix", "soft_qmix", "mappo"])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--ours-defaults", action="store_true", help="ours with its plain defaults, not matched")
    parser.add_argument("--no-jaxmarl", action="store_true", help="only our rows (e.g. to time a change of ours)")
    parser.add_argument("--repeats", type=int, default=1, help="warm runs of each code, taking turns")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    race, size = args.env.split("/")[1].split("_")
    scenario = {"5v5": "smacv2_5_units", "10v10": "smacv2_10_units"}[size]
    settings = OURS_DEFAULTS if args.ours_defaults else OURS_MATCHED
    rows: list[dict] = []

    def emit(result: dict, repeat: int | None = None) -> None:
        result["repeat"] = repeat
        print(json.dumps(result), flush=True)
        rows.append(result)

    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        for algo in args.algo:
            ours_cache = scratch / f"cache_ours_{algo}"
            anchor = None if args.no_jaxmarl else ("mappo" if algo == "mappo" else "qmix")
            anchor_cache = scratch / f"cache_jaxmarl_{anchor}"
            emit(run_ours(algo, args, scratch, ours_cache, settings[algo], "cold"))
            if anchor is not None and not anchor_cache.exists():  # Soft-QMIX reuses QMIX's filled cache
                emit(run_jaxmarl(anchor, args, scratch, anchor_cache, race, scenario, "cold"))
            for repeat in range(args.repeats):  # warm runs of the two codes back to back
                emit(run_ours(algo, args, scratch, ours_cache, settings[algo], "warm"), repeat)
                if anchor is not None:
                    theirs = run_jaxmarl(anchor, args, scratch, anchor_cache, race, scenario, "warm")
                    theirs["beside"] = algo  # the run of ours it took turns with
                    emit(theirs, repeat)
    record = {"env": args.env, "steps": args.steps, "machine": platform.processor() or platform.machine()}
    record.update({"cpus": os.cpu_count(), "command": " ".join(sys.argv), "rows": rows})
    record["warm_ratios"] = warm_ratios(rows)
    for ratio in record["warm_ratios"]:
        name = f"ours {ratio['ours']} ÷ JaxMARL {ratio['jaxmarl']}"
        print(f"warm, {name}: median {ratio['median']:.2f}x over the repeats {ratio['warm_ratios']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
