"""Side-by-side learning and speed: EPyMARL's QMIX against this platform's QMIX and Soft-QMIX on Spread.

EPyMARL is not part of this repository: `setup_epymarl.sh DEST` (next to this file) puts its source at a
pinned commit and a venv that runs it under DEST; point this script at them (`--epymarl-dir DEST/epymarl`,
`--epymarl-python DEST/venv/bin/python`). Both sides run mpe2's
simple_spread_v3 with mpe2's own team reward (the sum of the agents' rewards, local_ratio 0.5), 3 agents,
25 steps with the limit treated as termination, one env, and EPyMARL's QMIX settings on our side
(MATCHED below). EPyMARL's PettingZoo wrapper replaces the reward of step 25 by 0 when mpe2 ends the
episode; `env_args.max_cycles=26` lets gymnasium's TimeLimit end it at 25 instead, so that both sides
learn from, and report, the same 25 rewards.

  bash benchmarks/parity/setup_epymarl.sh W/epymarl-install
  python benchmarks/parity/parity.py run --which epymarl --seeds 0 1 2 --t-max 1000000 --work-dir W \
      --epymarl-dir W/epymarl-install/epymarl --epymarl-python W/epymarl-install/venv/bin/python
  python benchmarks/parity/parity.py run --which qmix soft_qmix --seeds 0 1 2 --t-max 1000000 --work-dir W
  python benchmarks/parity/parity.py speed --steps 20000 --work-dir W --epymarl-dir ... --epymarl-python ...
  python benchmarks/parity/parity.py report --work-dir W --out benchmarks/results/parity

`run` writes one record per run (test curve, wall and CPU seconds) under W/records; `speed` runs the three
methods for the same number of steps one after the other, so their speed ratio comes from one machine state;
`report` writes parity.json, parity.md and parity.png (mean over seeds with bootstrap CIs).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_KEY = "pz-mpe-simple-spread-v3"
CHECKPOINTS = (100_000, 300_000, 1_000_000)  # env steps at which the table compares test returns

# Our settings that match EPyMARL's qmix.yaml + default.yaml + gymma.yaml on this task.
MATCHED = [
    "env=mpe/spread_simple",
    "env.reward=mpe2",  # mpe2's team reward, local_ratio 0.5
    "env.landmark_scale=1.0",  # mpe2's own landmark placement, U(-1, 1)
    "env.time_limit_is_termination=true",  # EPyMARL stores the time limit as terminal
    "batch_size_run=1",
    "algo.batch_size=32",
    "algo.buffer_size=5000",
    "algo.critic_lr=0.0005",
    "algo.td_lambda=0.0",  # one-step targets
    "algo.epsilon_anneal_time=50000",
    "algo.agent=mlp",  # use_rnn: False
    "algo.standardise_rewards=true",
    "algo.target_update_unit=updates",  # target_update_interval_or_tau: 200 counts updates
    "algo.td_loss=mse",  # mean(td^2), no factor 1/2
]
OUR_ALGOS = {"qmix": ["algo=qmix"], "soft_qmix": ["algo=soft_qmix", "algo.policy_lr=0.0005"]}
LABELS = {"epymarl": "EPyMARL QMIX", "qmix": "QMIX (ours)", "soft_qmix": "Soft-QMIX (ours)"}


def _timed(cmd: list[str], cwd: Path, log: Path, env: dict[str, str]) -> tuple[int, float, float]:
    """Run `cmd`; return its exit code, wall seconds and CPU seconds (user + system of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with open(log, "w") as handle:
        code = subprocess.run(cmd, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, env=env).returncode
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return code, wall, cpu


def _single_thread_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled"}


def run_epymarl(args: argparse.Namespace, seed: int, t_max: int, label: str) -> dict:
    epymarl = Path(args.epymarl_dir).resolve()
    cmd = [
        args.epymarl_python,
        "src/main.py",
        "--config=qmix",
        "--env-config=gymma",
        "--force",  # sacred refuses config keys its yaml files lack (max_cycles) without it
        "with",
        f"env_args.key={ENV_KEY}",
        "env_args.time_limit=25",
        "env_args.max_cycles=26",
        f"t_max={t_max}",
        f"test_interval={args.test_interval}",
        f"test_nepisode={args.test_nepisode}",
        f"log_interval={args.test_interval}",
        f"runner_log_interval={args.test_interval}",
        f"learner_log_interval={args.test_interval}",
        f"seed={seed}",
        f"label={label}",
        "use_cuda=False",
        "save_model=False",
    ]
    log = Path(args.work_dir) / "logs" / f"{label}.log"
    code, wall, cpu = _timed(cmd, epymarl, log, _single_thread_env())
    if code != 0:
        raise RuntimeError(f"EPyMARL exited with {code}; see {log}")
    run_dir = _find_epymarl_run(epymarl, label)
    metrics = json.loads((run_dir / "metrics.json").read_text())["test_return_mean"]
    return {"steps": metrics["steps"], "returns": metrics["values"], "wall": wall, "cpu": cpu, "run_dir": str(run_dir)}


def _find_epymarl_run(epymarl: Path, label: str) -> Path:
    root = epymarl / "results" / "sacred" / "qmix" / ENV_KEY
    for config in sorted(root.glob("*/config.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        if json.loads(config.read_text()).get("label") == label:
            return config.parent
    raise RuntimeError(f"no EPyMARL run labelled {label} under {root}")


def run_ours(args: argparse.Namespace, algo: str, seed: int, t_max: int, label: str) -> dict:
    run_dir = Path(args.work_dir) / "ours" / label
    cmd = [
        sys.executable,
        "-m",
        "softqmix.train",
        *OUR_ALGOS[algo],
        *MATCHED,
        *args.extra,
        f"t_max={t_max}",
        f"test_interval={args.test_interval}",
        f"test_nepisode={args.test_nepisode}",
        f"log_interval={args.test_interval}",
        f"seed={seed}",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        "checkpoint.interval=0",
        f"hydra.run.dir={run_dir}",
    ]
    log = Path(args.work_dir) / "logs" / f"{label}.log"
    code, wall, cpu = _timed(cmd, REPO_ROOT, log, _single_thread_env())
    if code != 0:
        raise RuntimeError(f"softqmix.train exited with {code}; see {log}")
    steps, returns = [], []
    with open(run_dir / "metrics.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("test/return_mean"):
                steps.append(int(float(row["env_step"])))
                returns.append(float(row["test/return_mean"]))
    return {"steps": steps, "returns": returns, "wall": wall, "cpu": cpu, "run_dir": str(run_dir)}


def _record(args: argparse.Namespace, which: str, seed: int, t_max: int, kind: str) -> None:
    label = f"{kind}_{which}_s{seed}_t{t_max}"
    out = Path(args.work_dir) / "records" / f"{label}.json"
    if out.exists() and not args.force:
        print(f"{label}: done before ({out})")
        return
    print(f"{label}: running", flush=True)
    result = run_epymarl(args, seed, t_max, label) if which == "epymarl" else run_ours(args, which, seed, t_max, label)
    result.update(method=which, seed=seed, t_max=t_max, kind=kind)
    out.write_text(json.dumps(result, indent=1))
    per_10k = 1e4 / t_max
    print(f"{label}: {result['wall'] * per_10k:.1f} s wall, {result['cpu'] * per_10k:.1f} s CPU per 10k env steps")


def cmd_run(args: argparse.Namespace) -> None:
    for seed in args.seeds:
        for which in args.which:
            _record(args, which, seed, args.t_max, "learn")


def cmd_speed(args: argparse.Namespace) -> None:
    for which in ("epymarl", "qmix", "soft_qmix"):
        _record(args, which, 0, args.steps, "speed")


def _binned(steps: list[int], values: list[float], interval: int) -> dict[int, float]:
    """Test returns keyed by the nearest multiple of the test interval (EPyMARL tests at 25, 10 025, ...)."""
    return {round(s / interval) * interval: float(v) for s, v in zip(steps, values, strict=True)}


def uniform_policy_return(episodes: int, seed: int) -> float:
    """Mean return of uniformly random actions on MATCHED's env (composed from the same overrides as our runs):
    the floor the learners' greedy test returns are read against."""
    from hydra import compose, initialize_config_dir

    from softqmix import CONF_DIR
    from softqmix.config import register_configs
    from softqmix.envs.registry import make_env

    register_configs()  # the schemas the YAML files build on
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        env_cfg = compose(config_name="train", overrides=[*OUR_ALGOS["qmix"], *MATCHED]).env
    env = make_env(env_cfg)
    n_agents, n_actions = env.info().n_agents, env.info().n_actions
    rng = np.random.default_rng(seed)
    returns = []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            result = env.step(rng.integers(0, n_actions, size=n_agents))
            total += result.reward
            done = result.terminated or result.truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def cmd_report(args: argparse.Namespace) -> None:
    from softqmix.results.stats import aggregate_seeds, mean_curve_with_ci

    records = [json.loads(p.read_text()) for p in sorted((Path(args.work_dir) / "records").glob("*.json"))]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"settings": {"ours": MATCHED, "our_algos": OUR_ALGOS}, "methods": {}, "speed": {}}
    lines = ["| method | seeds | " + " | ".join(f"test return at {c // 1000}k" for c in CHECKPOINTS) + " |"]
    lines.append("|---|---|" + "---|" * len(CHECKPOINTS))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    per_seed: list[str] = []
    for method in ("epymarl", "qmix", "soft_qmix"):
        runs = [r for r in records if r["method"] == method and r["kind"] == "learn"]
        if not runs:
            continue
        curves = [_binned(r["steps"], r["returns"], args.test_interval) for r in runs]
        common = sorted(set.intersection(*(set(c) for c in curves)))
        values = np.array([[c[s] for s in common] for c in curves])
        cells, entry = [], {"seeds": [r["seed"] for r in runs], "steps": common, "returns": values.tolist()}
        for checkpoint in CHECKPOINTS:
            if checkpoint not in common:
                cells.append("–")
                continue
            agg = aggregate_seeds(values[:, common.index(checkpoint)], reps=args.reps, confidence=0.95, seed=0)
            entry[str(checkpoint)] = agg.__dict__
            cells.append(f"{agg.mean:.1f} ± {agg.std:.1f} (IQM {agg.iqm:.1f} [{agg.iqm_low:.1f}, {agg.iqm_high:.1f}])")
        late = np.array(common) >= CHECKPOINTS[0]
        entry["per_seed_mean_of_last_10_tests"] = values[:, -10:].mean(axis=1).tolist()
        entry["per_seed_lowest_test_from_100k"] = values[:, late].min(axis=1).tolist()
        per_seed.append(
            f"- {LABELS[method]}: mean of the last 10 tests per seed "
            + ", ".join(f"{v:.1f}" for v in entry["per_seed_mean_of_last_10_tests"])
            + f"; lowest test from {CHECKPOINTS[0] // 1000}k on "
            + ", ".join(f"{v:.1f}" for v in entry["per_seed_lowest_test_from_100k"])
        )
        report["methods"][method] = entry
        lines.append(f"| {LABELS[method]} | {len(runs)} | " + " | ".join(cells) + " |")
        mean, low, high = mean_curve_with_ci(values, reps=args.reps, confidence=0.95, seed=0)
        (line,) = ax.plot(common, mean, label=f"{LABELS[method]} ({len(runs)})", linewidth=1.3)
        ax.fill_between(common, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    speed_lines = ["| method | env steps | wall s per 10k env steps | CPU s per 10k env steps |", "|---|---|---|---|"]
    for method in ("epymarl", "qmix", "soft_qmix"):  # the learning runs too, though they may have shared cores
        runs = [r for r in records if r["method"] == method and r["kind"] == "learn"]
        if runs:
            wall = float(np.mean([r["wall"] * 1e4 / r["t_max"] for r in runs]))
            cpu = float(np.mean([r["cpu"] * 1e4 / r["t_max"] for r in runs]))
            report["speed"][f"{method}_learning_runs"] = {"runs": len(runs), "wall_per_10k": wall, "cpu_per_10k": cpu}
            steps = "+".join(sorted({str(r["t_max"]) for r in runs}))
            speed_lines.append(
                f"| {LABELS[method]}, learning runs (mean of {len(runs)}) | {steps} | {wall:.1f} | {cpu:.1f} |"
            )
    for r in records:
        if r["kind"] == "speed":
            per = 1e4 / r["t_max"]
            report["speed"][r["method"]] = {
                "steps": r["t_max"],
                "wall_per_10k": r["wall"] * per,
                "cpu_per_10k": r["cpu"] * per,
            }
            speed_lines.append(
                f"| {LABELS[r['method']]} | {r['t_max']} | {r['wall'] * per:.1f} | {r['cpu'] * per:.1f} |"
            )
    verdict = ["", "Our mean test return against the range of EPyMARL's seeds (min to max) at each checkpoint:", ""]
    reference = report["methods"].get("epymarl")
    for method in ("qmix", "soft_qmix"):
        ours = report["methods"].get(method)
        if not (ours and reference):
            continue
        for checkpoint in CHECKPOINTS:
            if str(checkpoint) not in ours or str(checkpoint) not in reference:
                continue
            theirs = np.array(reference["returns"])[:, reference["steps"].index(checkpoint)]
            mean = ours[str(checkpoint)]["mean"]
            place = "above" if mean > theirs.max() else "within" if mean >= theirs.min() else "below"
            ours[f"{checkpoint}_against_epymarl"] = place
            verdict.append(
                f"- {LABELS[method]} at {checkpoint // 1000}k: {mean:.1f}, EPyMARL seeds "
                f"{theirs.min():.1f} to {theirs.max():.1f}: {place}"
            )
    table_end = len(lines)
    lines.extend(verdict)
    lines.extend(["", "Per seed (seeds in record order):", "", *per_seed])
    uniform = uniform_policy_return(args.uniform_episodes, seed=0)
    report["uniform_policy_return"] = {"episodes": args.uniform_episodes, "mean": uniform}
    ax.axhline(uniform, color="grey", linestyle="--", linewidth=1, label=f"uniform policy ({uniform:.1f})")
    lines.insert(
        table_end,
        f"| uniform policy ({args.uniform_episodes} episodes) | – |" + f" {uniform:.1f} |" * len(CHECKPOINTS),
    )
    ax.set_xlabel("env steps")
    ax.set_ylabel("greedy test return (mpe2 reward, 25 steps)")
    ax.set_title("Spread (simple_spread_v3), mean over seeds, 95% bootstrap CI")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "parity.png")
    (out / "parity.json").write_text(json.dumps(report, indent=1))
    (out / "parity.md").write_text("\n".join(lines) + "\n\n" + "\n".join(speed_lines) + "\n")
    print("\n".join(lines) + "\n\n" + "\n".join(speed_lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "speed", "report"):
        p = sub.add_parser(name)
        p.add_argument("--work-dir", required=True, help="run outputs and records (not committed)")
        p.add_argument("--test-interval", type=int, default=10_000)
        if name != "report":
            p.add_argument("--epymarl-dir", help="an EPyMARL checkout (needed for the EPyMARL runs)")
            p.add_argument("--epymarl-python", default="python", help="the Python that runs EPyMARL")
            p.add_argument("--test-nepisode", type=int, default=32)
            p.add_argument("--force", action="store_true", help="rerun runs that have a record")
            p.add_argument("--extra", nargs="*", default=[], help="more overrides for our runs")
    sub.choices["run"].add_argument("--which", nargs="+", choices=["epymarl", *OUR_ALGOS], required=True)
    sub.choices["run"].add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    sub.choices["run"].add_argument("--t-max", type=int, default=1_000_000)
    sub.choices["speed"].add_argument("--steps", type=int, default=20_000)
    sub.choices["report"].add_argument("--out", default="benchmarks/results/parity")
    sub.choices["report"].add_argument("--uniform-episodes", type=int, default=256)
    sub.choices["report"].add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    args = parser.parse_args()
    for folder in ("records", "logs", "ours"):
        (Path(args.work_dir) / folder).mkdir(parents=True, exist_ok=True)
    {"run": cmd_run, "speed": cmd_speed, "report": cmd_report}[args.command](args)


if __name__ == "__main__":
    main()
