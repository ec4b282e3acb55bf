"""Soft-QMIX on the paper's matrix game: the authors' released code beside ours, seed by seed, same settings.

The authors' code is not part of this repository: `setup_softqmix_authors.sh DEST` (next to this file) puts
their source at a pinned commit, patched only to run here (each change stated in that script), and a venv
under DEST. Both codes play the paper's Table 1 game ([[8, -12, -12], [-12, 0, 0], [-12, 0, 0]]) with the
settings of the authors' code: 4 envs, one update per 4 one-step episodes, buffer 5000, batch 128, Adam lr 1e-3,
TD(lambda) 0.4, gamma 0.99, hard target copy every 200 episodes, alpha 0.03 (hard-coded on their side; only
ours can change it). Their qmix.yaml sets t_max 10 050 000 over the 50 000 of their env config, so the length is
always given here (`--t-max`). Their runs use their own command line (`src/main.py --config=qmix
--env-config=one_step_matrix_game with ...`) on the CPU; ours `python -m softqmix.train experiment=paper_matrix`
with the form chosen by `--form`:

  release  `ablation=release`: the released code's design, its entropy leak after termination included
  default  no ablation: what `python train.py` runs (the released design, the leak masked)
  full     `ablation=full`: the paper's form (QMIX mixer over g, no residual, plain TD loss)

and any further overrides in `--extra` (named in the tables by `--tag`, e.g. `--extra algo.grad_clip_mode=global
--tag globalclip`: the form "default+globalclip").

  bash benchmarks/parity/setup_softqmix_authors.sh W/authors-install
  python benchmarks/parity/matrix_parity.py run --which authors --seeds 0-19 --t-max 10000 --work-dir W \\
      --authors-dir W/authors-install/soft-qmix --authors-python W/authors-install/venv/bin/python
  python benchmarks/parity/matrix_parity.py run --which ours --form release --seeds 0-19 --t-max 10000 --work-dir W
  python benchmarks/parity/matrix_parity.py report --work-dir W --out benchmarks/results/matrix_parity \
      --rates-out src/softqmix/eval/matrix_study_rates.json

Each run leaves one record (W/records/<label>.json): the greedy joint action, Q_tot of every joint action, the
training policies, wall and CPU seconds. On their side the record is computed from the agent and mixer their
run saved after its last update (softqmix_authors_eval.py, in their venv, with their modules); on ours from
the run's summary.json (softqmix.eval.matrix_report). A run succeeds as in docs/results.md §1: its greedy joint
action is (A, A) and |Q_tot(A, A) - 8| <= 1. `report` writes matrix_parity.json, matrix_parity.md and runs.csv:
per group (code, form, alpha, t_max) the success count with a 95% Wilson interval and every seed's greedy
joint action. `init` checks that both codes start from the same agent network at a seed.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import subprocess
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from harness import REPO_ROOT, run_softqmix, single_thread_env, timed_run

from softqmix.eval.matrix_study import greedy_is_optimal, optimal_joint_action, run_success
from softqmix.results.stats import wilson_interval

HERE = Path(__file__).resolve().parent
AUTHORS_ALPHA = 0.03  # hard-coded in their learner and their action selector
GRAD_CLIP = 10.0  # grad_norm_clip on both sides
FORMS = {"release": ["ablation=release"], "default": [], "full": ["ablation=full"]}
NAMES = "ABC"


def parse_seeds(items: list[str]) -> list[int]:
    """`0 1 5-9` -> [0, 1, 5, 6, 7, 8, 9]."""
    seeds: list[int] = []
    for item in items:
        low, _, high = item.partition("-")
        seeds.extend(range(int(low), int(high or low) + 1))
    return seeds


def label_of(which: str, form: str, alpha: float, t_max: int, seed: int) -> str:
    return f"{which}_{form}_a{alpha:g}_t{t_max}_s{seed}"


def run_authors(args: argparse.Namespace, seed: int, label: str) -> dict[str, Any]:
    code_dir = Path(args.authors_dir).resolve()
    results = Path(args.work_dir).resolve() / "authors" / label
    cmd = [
        args.authors_python,
        "src/main.py",
        "--config=qmix",
        "--env-config=one_step_matrix_game",
        "with",
        f"t_max={args.t_max}",
        f"seed={seed}",
        f"label={label}",
        "use_cuda=False",
        "use_wandb=False",
        "save_model=True",
        # their loop saves at its first step (t_env = 4) and then every interval: the second save is after the
        # update of the last collection (t_env = t_max + 4)
        f"save_model_interval={args.t_max}",
        f"local_results_path={results}",
    ]
    log = Path(args.work_dir) / "logs" / f"{label}.log"
    code, wall, cpu = timed_run(cmd, code_dir, log)
    if code != 0:
        raise RuntimeError(f"the authors' code exited with {code}; see {log}")
    steps = sorted((p for p in results.glob("models/*/*") if p.name.isdigit()), key=lambda p: int(p.name))
    if not steps or int(steps[-1].name) < args.t_max:
        raise RuntimeError(f"no model saved at the end of {label} under {results}; see {log}")
    config = _find_sacred_config(code_dir, label)
    evaluator = [args.authors_python, str(HERE / "softqmix_authors_eval.py"), str(code_dir / "src"), str(steps[-1])]
    out = subprocess.run([*evaluator, str(config)], capture_output=True, text=True, check=True, env=single_thread_env())
    report = json.loads(out.stdout)
    return {"report": report, "payoff": report.pop("payoff"), "saved_at": int(steps[-1].name), "wall": wall, "cpu": cpu}


def _find_sacred_config(code_dir: Path, label: str) -> Path:
    root = code_dir / "results" / "sacred" / "one_step_matrix_game" / "qmix"
    for config in sorted(root.glob("*/config.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        if json.loads(config.read_text()).get("label") == label:
            return config
    raise RuntimeError(f"no sacred run labelled {label} under {root}")


def run_ours(args: argparse.Namespace, seed: int, label: str) -> dict[str, Any]:
    run_dir = Path(args.work_dir).resolve() / "ours" / label
    overrides = [
        "experiment=paper_matrix",
        "algo=soft_qmix",
        *FORMS[args.form],
        *args.extra,
        f"algo.alpha={args.alpha}",
        f"t_max={args.t_max}",
        f"seed={seed}",
    ]
    summary, wall, cpu = run_softqmix(overrides, run_dir, Path(args.work_dir) / "logs" / f"{label}.log")
    payoff = yaml.safe_load((run_dir / "config.yaml").read_text())["env"]["payoff"]
    return {"report": summary["matrix_game"], "payoff": payoff, "updates": summary["updates"], "wall": wall, "cpu": cpu}


def _one(args: argparse.Namespace, seed: int) -> None:
    form = f"{args.form}+{args.tag}" if args.tag else args.form
    label = label_of(args.which, form, args.alpha, args.t_max, seed)
    out = Path(args.work_dir) / "records" / f"{label}.json"
    if out.exists() and not args.force:
        print(f"{label}: done before ({out})", flush=True)
        return
    print(f"{label}: running", flush=True)
    result = run_authors(args, seed, label) if args.which == "authors" else run_ours(args, seed, label)
    result.update(which=args.which, form=form, alpha=args.alpha, t_max=args.t_max, seed=seed, label=label)
    result.update(extra=args.extra)
    out.write_text(json.dumps(result, indent=1))
    greedy = result["report"]["greedy_actions"]
    print(f"{label}: greedy {_joint(greedy)}, {result['wall']:.0f} s wall, {result['cpu']:.0f} s CPU", flush=True)


def cmd_run(args: argparse.Namespace) -> None:
    if args.which == "authors":
        if args.authors_dir is None:
            raise SystemExit("--authors-dir is needed for the authors' runs (setup_softqmix_authors.sh DEST)")
        if args.alpha != AUTHORS_ALPHA or args.form != "release" or args.extra:
            raise SystemExit(f"the authors' code runs its released form at alpha {AUTHORS_ALPHA} only")
    for sub in ("records", "logs"):
        (Path(args.work_dir) / sub).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for future in [pool.submit(_one, args, seed) for seed in parse_seeds(args.seeds)]:
            future.result()


# our agent net's parameter names -> theirs (nn.GRU over the sequence here, GRUCell there; the same weights)
AGENT_NAMES = {
    "fc1.weight": "fc1.weight",
    "fc1.bias": "fc1.bias",
    "rnn.weight_ih_l0": "rnn.weight_ih",
    "rnn.weight_hh_l0": "rnn.weight_hh",
    "rnn.bias_ih_l0": "rnn.bias_ih",
    "rnn.bias_hh_l0": "rnn.bias_hh",
    "fc2.weight": "fc2.weight",
    "fc2.bias": "fc2.bias",
}


def cmd_init(args: argparse.Namespace) -> None:
    """Compare the agent networks the two codes start from at each seed, as their real runs build them.

    A run too short for any update saves its initial weights: ours with t_max=4 (one collection; the buffer
    needs 128 episodes before the first update) in its final checkpoint, theirs with t_max=1 in the model their
    loop saves after its first collection.
    """
    import torch

    work = Path(args.work_dir).resolve() / "init"
    (work / "logs").mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in parse_seeds(args.seeds):
        ours_dir, theirs_dir = work / f"ours_s{seed}", work / f"authors_s{seed}"
        cmd = [sys.executable, "-m", "softqmix.train", "experiment=paper_matrix", "t_max=4", f"seed={seed}"]
        cmd += ["logger=csv", "print_report=false", "trainer.enable_progress_bar=false", f"hydra.run.dir={ours_dir}"]
        if timed_run(cmd, REPO_ROOT, work / "logs" / f"ours_s{seed}.log")[0] != 0:
            raise RuntimeError(f"softqmix.train failed; see {work / 'logs'}")
        state = torch.load(ours_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        ours = {
            k.removeprefix("learner.agent."): v
            for k, v in state["state_dict"].items()
            if k.startswith("learner.agent.")
        }
        cmd = [args.authors_python, "src/main.py", "--config=qmix", "--env-config=one_step_matrix_game", "with"]
        cmd += ["t_max=1", f"seed={seed}", "use_cuda=False", "use_wandb=False", "save_model=True"]
        cmd += [f"local_results_path={theirs_dir}", f"label=init_s{seed}"]
        if timed_run(cmd, Path(args.authors_dir).resolve(), work / "logs" / f"authors_s{seed}.log")[0] != 0:
            raise RuntimeError(f"the authors' code failed; see {work / 'logs'}")
        theirs = torch.load(next(theirs_dir.glob("models/*/4/agent.th")), map_location="cpu")
        gap = max(float((ours[mine] - theirs[other]).abs().max()) for mine, other in AGENT_NAMES.items())
        rows.append({"seed": seed, "max_abs_difference": gap})
        print(f"seed {seed}: largest |ours - theirs| over the agent net's initial weights {gap:.3g}", flush=True)
    (work / "init.json").write_text(json.dumps(rows, indent=1))


def _joint(actions: list[int]) -> str:
    return "(" + ", ".join(NAMES[a] for a in actions) + ")"


def logged_grad_norms(work_dir: Path, record: dict[str, Any]) -> list[float]:
    """The gradient norms a run logged (one update every 1 000 env steps): theirs the one global norm, printed in
    their log; ours the joint norm of the critic's and f's gradients (what a global clip would see), from
    metrics.csv."""
    if record["which"] == "authors":
        log = work_dir / "logs" / f"{record['label']}.log"
        return [float(v) for v in re.findall(r"grad_norm:\s+([0-9.eE+-]+)", log.read_text())] if log.exists() else []
    metrics = work_dir / "ours" / record["label"] / "metrics.csv"
    if not metrics.exists():
        return []
    norms = []
    with open(metrics, newline="") as handle:
        for row in csv.DictReader(handle):
            parts = [float(row[k]) for k in row if k.startswith("train/grad_norm") and row[k]]
            if parts:
                norms.append(math.sqrt(sum(x * x for x in parts)))
    return norms


def group_rows(records: list[dict[str, Any]], work_dir: Path | None = None) -> list[dict[str, Any]]:
    """One row per (code, form, alpha, t_max): successes over seeds with a 95% Wilson interval."""
    groups: dict[tuple[str, str, float, int], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[(record["which"], record["form"], record["alpha"], record["t_max"])].append(record)
    rows = []
    for (which, form, alpha, t_max), runs in sorted(groups.items()):
        runs.sort(key=lambda r: r["seed"])
        seeds = []
        for run in runs:
            summary, payoff = {"matrix_game": run["report"]}, run["payoff"]
            a1, a2 = optimal_joint_action(payoff)
            greedy = run["report"]["greedy_actions"]
            seeds.append(
                {
                    "seed": run["seed"],
                    "greedy": _joint(greedy),
                    "greedy_optimal": greedy_is_optimal(summary, payoff),
                    "success": run_success(summary, payoff),
                    "q_tot_optimum": run["report"]["q_tot"][a1][a2],
                    "q_tot_greedy": run["report"]["q_tot"][greedy[0]][greedy[1]],
                    "p_optimum": [probs[a] for probs, a in zip(run["report"]["policy_probs"], (a1, a2), strict=True)],
                    "wall": run["wall"],
                    "cpu": run["cpu"],
                    "logged_grad_norms": logged_grad_norms(work_dir, run) if work_dir is not None else [],
                }
            )
        successes = sum(s["success"] for s in seeds)
        low, high = wilson_interval(successes, len(seeds))
        rows.append(
            {
                "code": which,
                "form": form,
                "alpha": alpha,
                "t_max": t_max,
                "runs": len(seeds),
                "greedy_optimal": sum(s["greedy_optimal"] for s in seeds),
                "successes": successes,
                "rate": successes / len(seeds),
                "ci95": [low, high],
                "succeeded_seeds": [s["seed"] for s in seeds if s["success"]],
                "cpu_seconds": sum(s["cpu"] for s in seeds),
                "logged_updates": sum(len(s["logged_grad_norms"]) for s in seeds),
                "logged_updates_over_clip": sum(n > GRAD_CLIP for s in seeds for n in s["logged_grad_norms"]),
                "seeds": seeds,
            }
        )
    return rows


def _mean(values: list[float]) -> str:
    return f"{sum(values) / len(values):.2f}" if values else "–"


def to_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| code | form | α | t_max | success | rate [95% Wilson CI] | seeds that found (A, A) "
        "| mean Q_tot(A, A): successes / others | largest P(A) of an agent in the others "
        "| logged updates with gradient norm > 10 | CPU min |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        wins = [s["q_tot_optimum"] for s in r["seeds"] if s["success"]]
        others = [s["q_tot_optimum"] for s in r["seeds"] if not s["success"]]
        p_others = [p for s in r["seeds"] if not s["success"] for p in s["p_optimum"]]
        low, high = r["ci95"]
        lines.append(
            f"| {r['code']} | {r['form']} | {r['alpha']:g} | {r['t_max']} | {r['successes']}/{r['runs']} "
            f"| {r['rate']:.2f} [{low:.2f}, {high:.2f}] | {', '.join(map(str, r['succeeded_seeds'])) or '–'} "
            f"| {_mean(wins)} / {_mean(others)} | {f'{max(p_others):.1g}' if p_others else '–'} "
            f"| {r['logged_updates_over_clip']}/{r['logged_updates']} | {r['cpu_seconds'] / 60:.1f} |"
        )
    lines += ["", "Greedy joint action per seed:", ""]
    seeds = sorted({s["seed"] for r in rows for s in r["seeds"]})
    lines.append("| code, form, α, t_max | " + " | ".join(map(str, seeds)) + " |")
    lines.append("|---|" + "---|" * len(seeds))
    for r in rows:
        by_seed = {s["seed"]: s["greedy"].strip("()").replace(", ", "") for s in r["seeds"]}
        cells = [f"**{by_seed[s]}**" if by_seed.get(s) == "AA" else by_seed.get(s, "") for s in seeds]
        lines.append(f"| {r['code']}, {r['form']}, {r['alpha']:g}, {r['t_max']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def study_rates(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the verdict line after a matrix run quotes: per setting of ours, the seeds whose greedy joint action was
    the optimum, and the authors' count at the same alpha and length where their code ran. Their code is the
    released design, so it stands beside our `release` and `default` forms (the two differ only in the entropy
    after termination, which shifts every joint action's target alike on this one-step game)."""
    authors = {(r["alpha"], r["t_max"]): r for r in rows if r["code"] == "authors"}
    rates = []
    for r in rows:
        if r["code"] != "ours" or r["form"] not in FORMS:  # a tagged variant (`--tag`) is no setting a run has
            continue
        theirs = authors.get((r["alpha"], r["t_max"])) if r["form"] in ("release", "default") else None
        rates.append(
            {
                "form": r["form"],
                "alpha": r["alpha"],
                "t_max": r["t_max"],
                "ours": [r["greedy_optimal"], r["runs"]],
                "authors": [theirs["greedy_optimal"], theirs["runs"]] if theirs is not None else None,
            }
        )
    return rates


def group_key(row: dict[str, Any]) -> tuple[str, str, float, int]:
    return row["code"], row["form"], row["alpha"], row["t_max"]


def with_earlier_rows(rows: list[dict[str, Any]], earlier: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A partial rerun's rows, and an earlier report's rows for every group it did not rerun, in report order."""
    rerun = {group_key(r) for r in rows}
    return sorted(rows + [r for r in earlier if group_key(r) not in rerun], key=group_key)


def cmd_report(args: argparse.Namespace) -> None:
    records = [json.loads(p.read_text()) for p in sorted((Path(args.work_dir) / "records").glob("*.json"))]
    if not records:
        raise SystemExit(f"no records under {args.work_dir}/records")
    rows = group_rows(records, Path(args.work_dir))
    if args.earlier:
        kept = len(rows)
        rows = with_earlier_rows(rows, json.loads(Path(args.earlier).read_text()))
        print(f"{kept} groups from {args.work_dir}, {len(rows) - kept} kept from {args.earlier}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "matrix_parity.json").write_text(json.dumps(rows, indent=1))
    markdown = to_markdown(rows)
    (out / "matrix_parity.md").write_text(markdown + "\n")
    with open(out / "runs.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["code", "form", "alpha", "t_max", "seed", "greedy", "success", "q_tot_AA", "q_tot_greedy"])
        for r in rows:
            for s in r["seeds"]:
                q_values = [f"{s['q_tot_optimum']:.3f}", f"{s['q_tot_greedy']:.3f}"]
                writer.writerow(
                    [r["code"], r["form"], r["alpha"], r["t_max"], s["seed"], s["greedy"], s["success"], *q_values]
                )
    print(markdown)
    if args.rates_out:  # only when asked: a report of a partial rerun must not replace the study's counts
        rates = study_rates(rows)
        Path(args.rates_out).write_text(json.dumps(rates, indent=1) + "\n")
        print(f"study rates for the verdict line of `python train.py`: {args.rates_out} ({len(rates)} settings)")
    print(f"total CPU {sum(r['cpu_seconds'] for r in rows) / 60:.1f} min over {len(records)} runs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="train N seeds of one code and record each run's end state")
    run.add_argument("--which", choices=["authors", "ours"], required=True)
    run.add_argument("--form", choices=list(FORMS), default="release", help="our Soft-QMIX form (authors: release)")
    run.add_argument("--alpha", type=float, default=AUTHORS_ALPHA)
    run.add_argument("--seeds", nargs="+", default=["0-9"], help="seeds and ranges: 0 1 5-9")
    run.add_argument("--t-max", type=int, default=10_000)
    run.add_argument("--extra", nargs="*", default=[], help="more overrides for our runs (name them with --tag)")
    run.add_argument("--tag", default="", help="appended to the form in labels and tables: <form>+<tag>")
    run.add_argument("--jobs", type=int, default=1, help="runs at a time")
    run.add_argument("--work-dir", required=True, help="run outputs and records (not committed)")
    run.add_argument("--authors-dir", help="DEST/soft-qmix of setup_softqmix_authors.sh")
    run.add_argument("--authors-python", default="python", help="DEST/venv/bin/python of the same")
    run.add_argument("--force", action="store_true", help="rerun runs that have a record")
    init = sub.add_parser("init", help="compare the agent nets both codes start from, seed by seed")
    init.add_argument("--seeds", nargs="+", default=["0-3"])
    init.add_argument("--work-dir", required=True)
    init.add_argument("--authors-dir", required=True)
    init.add_argument("--authors-python", required=True)
    report = sub.add_parser("report", help="tabulate the records")
    report.add_argument("--work-dir", required=True)
    report.add_argument("--out", default="benchmarks/results/matrix_parity")
    report.add_argument(
        "--rates-out",
        default=None,
        help="also write the counts that the verdict line of a matrix run quotes: the package data "
        "src/softqmix/eval/matrix_study_rates.json, from the whole study's work dir (or a rerun's with --earlier)",
    )
    report.add_argument(
        "--earlier",
        default=None,
        help="an earlier report's matrix_parity.json: its groups that this work dir did not rerun are kept",
    )
    args = parser.parse_args()
    {"run": cmd_run, "init": cmd_init, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
