"""HASAC beside HARL's own HASAC on MPE Spread Simple: same task, same settings, same env steps and seeds.

HARL is not part of this repository: `setup_harl.sh DEST` (next to this file) builds its source at commit
d539bad (HARL_COMMIT) and a venv under DEST; point this script at them (`--harl-dir DEST/harl`, `--harl-python
DEST/venv/bin/python`). HARL runs through its own command line (`examples/train.py --algo hasac --env
pettingzoo_mpe --scenario simple_spread_v2 --continuous_actions False --<key> <value> ...`), ours through ours
(`python -m softqmix.train algo=hasac env=mpe/spread_simple ...`), each with the settings of `matched()`.

  bash benchmarks/parity/setup_harl.sh W/harl-install
  python benchmarks/parity/hasac_parity.py envcheck --work-dir W --harl-dir W/harl-install/harl \\
      --harl-python W/harl-install/venv/bin/python
  nice -n 10 python benchmarks/parity/hasac_parity.py run --which harl ours --seeds 0 1 2 3 4 --steps 162000 \\
      --jobs 2 --work-dir W --harl-dir W/harl-install/harl --harl-python W/harl-install/venv/bin/python
  python benchmarks/parity/hasac_parity.py reeval --work-dir W --episodes 1000 --harl-dir W/harl-install/harl \\
      --harl-python W/harl-install/venv/bin/python
  python benchmarks/parity/hasac_parity.py report --work-dir W --out benchmarks/results/hasac_parity_mpe

`run` leaves one record per run (W/records/<label>.json: the eval curve, the final greedy return, wall and CPU
seconds, the exact command); `report` writes <out>.json and <out>.md: per code every seed's final greedy
(deterministic) return, mean ± std, IQM, min and max (the seed range), env steps/s, wall and CPU seconds, the
settings, and an exact permutation test of the two codes' seed means. `envcheck` plays uniformly random actions
through both codes' env wrappers (HARL's PettingZooMPEEnv, called in HARL's venv; our MPESpreadEnv) and checks that
their team returns agree, the check that the two codes' returns are on one scale. `reeval` plays every run's final
policy greedily on the same starts for both codes (mpe2 resets with seeds 1000001, 1000002, ...; HARL's policies
through HARL's classes and wrapper in its venv, ours through our checkpoint and env), so the final returns can be
compared without the noise of a 32-episode eval; `report` adds its table.

The return both codes report. HARL's MPE wrapper sums mpe2's per-agent rewards of a step
(simple_spread_v3: (1 - local_ratio) * global + local_ratio * (-own collisions), local_ratio 0.5) and hands that
sum to every agent; its runner's eval sums each agent's rewards over the episode, concatenates the agents'
sums of all eval episodes and logs their mean (progress.txt: "step,return,length"). Every agent's sum is the
team's, so the logged number is the mean over episodes of the 25-step team return. Ours with `env.reward=mpe2` is
the same team reward (the sum of mpe2's per-agent rewards), and our `test/return_mean` the mean over test
episodes of its 25-step sum. No conversion is applied; `envcheck` measures that both wrappers agree.

Matched settings (HARL's CLI key <-> our override; `matched()` builds both lists from one table):

  env        scenario simple_spread_v2 (setup_harl.sh links it to mpe2's simple_spread_v3), continuous_actions
             False, N 3, local_ratio 0.5, 25 steps (HARL's wrapper: max_cycles 26 to mpe2 and its own truncation
             at 25) <-> env=mpe/spread_simple env.reward=mpe2 env.local_ratio=0.5 env.landmark_scale=1.0
             (mpe2's own U(-1, 1) landmarks, not the paper's 0.8) env.scale=1.0 env.episode_limit=25
  time limit use_proper_time_limits True (the wrapper flags step 25 as a bad_transition: a truncation,
             bootstrapped) <-> algo.proper_time_limits=true env.time_limit_is_termination=false
  length     num_env_steps = steps - warmup (HARL counts after its warm-up) <-> t_max = steps (ours includes it)
  envs       n_rollout_threads 8 <-> batch_size_run=8
  warm-up    warmup_steps <-> algo.warmup_steps (uniformly random actions, no updates)
  pacing     train_interval 50, update_per_train 1: 50 updates every 50 steps of the 8 envs <->
             algo.env_steps_per_update=8 (25 updates after each collection of 8 episodes x 25 steps)
  nets       hidden_sizes, activation_func relu, use_feature_normalization True, gain 0.01, orthogonal init <->
             algo.hidden_sizes, algo.activation=relu, algo.feature_norm=true, algo.output_gain=0.01
  optimizers lr (actors) 3e-4, critic_lr 5e-4, alpha_lr 3e-4, Adam <-> algo.actor_lr, algo.critic_lr,
             algo.alpha_lr, algo.optimizer=adam
  temperature auto_alpha True (log alpha starts at 0; HARL's discrete target entropy is 0) <->
             algo.auto_alpha=true algo.alpha_init=1.0 algo.target_entropy_scale=0.0
  targets    gamma 0.99, n_step 20, polyak 0.005 <-> algo.gamma, algo.n_step, algo.polyak
  critic     use_huber_loss False, use_valuenorm False (HARL's tuned discrete simple_spread config) <->
             algo.huber_loss=false algo.value_norm=false
  replay     batch_size (transitions) <-> algo.batch_size; buffer_size 25 x E transitions <->
             algo.buffer_size=E episodes of 25 steps (E = BUFFER_EPISODES: no run here fills either)
  agents     share_param False, fixed_order False (a fresh random order every update) <-> algo.share_param=false
             algo.fixed_order=false; HARL's use_policy_active_masks True is a no-op on MPE (all agents end together)
  eval       eval_episodes 32 on n_eval_rollout_threads 8 (4 rounds of 8, greedy: the policies' argmax) <->
             test_nepisode=32 (our test collector has batch_size_run envs: 4 rounds of 8, greedy)
             eval_interval K runner steps = 8 K env steps <-> test_interval = 8 K; HARL evaluates at
             warmup + 8 K j, ours at 8 K j; both at `steps` at the end when steps - warmup is a multiple of 8 K
  threads    cuda False, torch_threads 1 <-> trainer=cpu trainer.torch_threads=1; OMP/MKL_NUM_THREADS=1 for both
  seed       seed <-> seed (the same numbers; the two codes' random streams differ)

What stays different (docs/algorithms/hasac.md, "Departures from HARL"): HARL keeps a flat ring of transitions
and updates every 50 steps of its envs, ours stores whole episodes and updates after each round of 8 episodes;
ours also earns the 25 updates of the collection that ends the warm-up (HARL starts counting after it), so it
makes (steps - warmup) / 8 + 25 updates where HARL makes (steps - warmup) / 8; HARL steps its envs in 8
subprocesses (plus 8 for eval), ours in its training process. HARL's config.json is read back after each of its runs
and every key passed here must hold the value passed (its CLI silently ignores keys it does not know).

Presets (`--preset`): `small` (default) is the CPU-sized setting of benchmarks/hasac_learning.py, applied to
both codes: hidden [64, 64], batches of 256, warm-up 2000. `paper` is Appendix J's [256, 256], 1000, 10000.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from harness import run_softqmix, single_thread_env, softqmix_command, timed_run

HARL_COMMIT = "d539bad20f677bc4ce9fa200fa5de31b5f0b9d37"
CODES = ("harl", "ours")
LABELS = {"harl": "HARL HASAC (d539bad)", "ours": "HASAC (ours)"}
EPISODE_LIMIT = 25
N_ENVS = 8
EVAL_EPISODES = 32
REEVAL_FIRST = 1_000_001  # env seeds of the re-evaluation episodes, away from training seeds
BUFFER_EPISODES = 40_000  # 1M transitions on HARL's side, as HARL's default; no run here fills it
PRESETS: dict[str, dict[str, Any]] = {
    "small": {"hidden_sizes": [64, 64], "batch_size": 256, "warmup_steps": 2000},
    "paper": {"hidden_sizes": [256, 256], "batch_size": 1000, "warmup_steps": 10_000},
}


@dataclass(frozen=True)
class Setting:
    """One matched setting: HARL's CLI keys and values, and our Hydra overrides that mean the same."""

    what: str
    harl: dict[str, Any]
    ours: tuple[str, ...]


def matched(preset: str, steps: int, seed: int, eval_every: int) -> list[Setting]:
    """Every setting of both codes' runs, side by side. `eval_every` is in env steps (a multiple of 8)."""
    p = PRESETS[preset]
    warmup, hidden = p["warmup_steps"], p["hidden_sizes"]
    widths = "[" + ",".join(str(h) for h in hidden) + "]"
    return [
        Setting(
            "env: Spread, N=3, discrete, mpe2 team reward (local_ratio 0.5), landmarks U(-1,1)",
            {"scenario": "simple_spread_v2", "continuous_actions": False},
            (
                "env=mpe/spread_simple",
                "env.reward=mpe2",
                "env.local_ratio=0.5",
                "env.landmark_scale=1.0",
                "env.scale=1.0",
                f"env.episode_limit={EPISODE_LIMIT}",
            ),
        ),
        Setting(
            "25-step limit is a truncation, bootstrapped",
            {"use_proper_time_limits": True},
            ("algo.proper_time_limits=true", "env.time_limit_is_termination=false"),
        ),
        Setting("env steps (HARL: after the warm-up)", {"num_env_steps": steps - warmup}, (f"t_max={steps}",)),
        Setting("parallel envs", {"n_rollout_threads": N_ENVS}, (f"batch_size_run={N_ENVS}",)),
        Setting("warm-up steps (uniform actions)", {"warmup_steps": warmup}, (f"algo.warmup_steps={warmup}",)),
        Setting(
            "one update per 8 env steps",
            {"train_interval": 50, "update_per_train": 1},
            ("algo.env_steps_per_update=8",),
        ),
        Setting(
            "policy and critic MLPs",
            {
                "hidden_sizes": hidden,
                "activation_func": "relu",
                "use_feature_normalization": True,
                "gain": 0.01,
                "initialization_method": "orthogonal_",
            },
            (
                f"algo.hidden_sizes={widths}",
                "algo.activation=relu",
                "algo.feature_norm=true",
                "algo.output_gain=0.01",
            ),
        ),
        Setting(
            "learning rates (Adam)",
            {"lr": 3e-4, "critic_lr": 5e-4, "alpha_lr": 3e-4},
            ("algo.actor_lr=0.0003", "algo.critic_lr=0.0005", "algo.alpha_lr=0.0003", "algo.optimizer=adam"),
        ),
        Setting(
            "automatic temperatures from 1, target entropy 0",
            {"auto_alpha": True},
            ("algo.auto_alpha=true", "algo.alpha_init=1.0", "algo.target_entropy_scale=0.0"),
        ),
        Setting(
            "targets",
            {"gamma": 0.99, "n_step": 20, "polyak": 0.005},
            ("algo.gamma=0.99", "algo.n_step=20", "algo.polyak=0.005"),
        ),
        Setting(
            "squared-error critic loss, no value normalisation",
            {"use_huber_loss": False, "use_valuenorm": False},
            ("algo.huber_loss=false", "algo.value_norm=false"),
        ),
        Setting(
            "replay: batch of transitions, capacity",
            {"batch_size": p["batch_size"], "buffer_size": BUFFER_EPISODES * EPISODE_LIMIT},
            (f"algo.batch_size={p['batch_size']}", f"algo.buffer_size={BUFFER_EPISODES}"),
        ),
        Setting(
            "one policy per agent, random update order",
            {"share_param": False, "fixed_order": False, "use_linear_lr_decay": False},
            ("algo.share_param=false", "algo.fixed_order=false"),
        ),
        Setting(
            "greedy eval: 32 episodes on 8 envs",
            {
                "use_eval": True,
                "eval_episodes": EVAL_EPISODES,
                "n_eval_rollout_threads": N_ENVS,
                "eval_interval": eval_every // N_ENVS,
            },
            (f"test_nepisode={EVAL_EPISODES}", f"test_interval={eval_every}"),
        ),
        Setting(
            "CPU, one torch thread",
            {"cuda": False, "torch_threads": 1},
            ("trainer=cpu", "trainer.torch_threads=1"),
        ),
        Setting("seed", {"seed": seed, "seed_specify": True}, (f"seed={seed}",)),
    ]


def harl_args(settings: list[Setting]) -> dict[str, Any]:
    return {k: v for s in settings for k, v in s.harl.items()}


def our_overrides(settings: list[Setting]) -> list[str]:
    return [o for s in settings for o in s.ours]


def _harl_value(value: Any) -> str:
    """HARL's train.py eval()s every CLI value: Python literals ("True", "[64, 64]", "0.0003")."""
    return repr(value) if not isinstance(value, str) else value


def _find_key(tree: Any, key: str) -> list[Any]:
    """Every value stored under `key` anywhere in HARL's nested config (its CLI sets a key at every depth)."""
    found: list[Any] = []
    if isinstance(tree, dict):
        for k, v in tree.items():
            if k == key and not isinstance(v, dict):
                found.append(v)
            found += _find_key(v, key)
    return found


def run_harl(args: argparse.Namespace, settings: list[Setting], label: str, steps: int) -> dict[str, Any]:
    """One HARL run through its CLI; parses progress.txt (eval rows) and checks config.json took every key."""
    harl = Path(args.harl_dir).resolve()
    log_dir = Path(args.work_dir).resolve() / "harl" / label
    shutil.rmtree(log_dir, ignore_errors=True)
    wanted = harl_args(settings)
    cmd = [
        args.harl_python,
        "examples/train.py",
        "--algo",
        "hasac",
        "--env",
        "pettingzoo_mpe",
        "--exp_name",
        label,
        *[item for key, value in wanted.items() for item in (f"--{key}", _harl_value(value))],
        "--log_dir",
        str(log_dir),
    ]
    log = Path(args.work_dir) / "logs" / f"{label}.log"
    code, wall, cpu = timed_run(cmd, harl, log)
    if code != 0:
        raise RuntimeError(f"HARL exited with {code}; see {log}")
    runs = sorted(glob.glob(str(log_dir / "pettingzoo_mpe" / "*" / "hasac" / label / "seed-*" / "progress.txt")))
    if len(runs) != 1:
        raise RuntimeError(f"expected one HARL run under {log_dir}, found {runs}")
    run_dir = Path(runs[0]).parent
    config = json.loads((run_dir / "config.json").read_text())
    for key, value in wanted.items():
        stored = _find_key(config, key)
        if not stored or any(v != value for v in stored):
            raise RuntimeError(f"HARL's config.json has {key}={stored}, this script passed {value!r}")
    eval_steps, returns = [], []
    for line in (run_dir / "progress.txt").read_text().splitlines():
        step, ret, length = (float(x) for x in line.split(",")[:3])
        if length != EPISODE_LIMIT:
            raise RuntimeError(f"HARL eval at {step} has mean length {length}, not {EPISODE_LIMIT}")
        eval_steps.append(int(step))
        returns.append(ret)
    if not eval_steps or eval_steps[-1] != steps:
        raise RuntimeError(f"HARL's last eval is at {eval_steps[-1:]} env steps, not at the end ({steps})")
    warmup = wanted["warmup_steps"]
    return {
        "steps": eval_steps,
        "returns": returns,
        "final_return": returns[-1],
        "updates": (steps - warmup) // N_ENVS,  # 50 updates per 50 runner steps of 8 envs
        "wall": wall,
        "cpu": cpu,
        "run_dir": str(run_dir),
        "command": cmd,
    }


def run_ours(args: argparse.Namespace, settings: list[Setting], label: str, steps: int) -> dict[str, Any]:
    """One run of ours through `python -m softqmix.train`; parses summary.json (every test's returns)."""
    run_dir = Path(args.work_dir).resolve() / "ours" / label
    shutil.rmtree(run_dir, ignore_errors=True)  # a run dir with a checkpoint would resume, not start afresh
    overrides = ["algo=hasac", *our_overrides(settings), f"log_interval={args.eval_every}"]
    summary, wall, cpu = run_softqmix(overrides, run_dir, Path(args.work_dir) / "logs" / f"{label}.log")
    tests = summary["tests"]
    if summary["env_steps"] != steps or int(tests[-1]["env_step"]) != steps:
        raise RuntimeError(f"our run ended at {summary['env_steps']} env steps, not {steps}")
    if any(int(t["test/episodes"]) != EVAL_EPISODES for t in tests):
        raise RuntimeError(f"a test of ours did not play {EVAL_EPISODES} episodes")
    return {
        "steps": [int(t["env_step"]) for t in tests],
        "returns": [float(t["test/return_mean"]) for t in tests],
        "final_return": float(summary["final_test_return"]),
        "updates": summary["updates"],
        "wall": wall,
        "train_wall": summary["wall_seconds"],
        "cpu": cpu,
        "run_dir": str(run_dir),
        "command": softqmix_command(overrides, run_dir),
    }


def _one(args: argparse.Namespace, code: str, seed: int, steps: int, kind: str) -> None:
    label = f"{kind}_{code}_{args.preset}_s{seed}_t{steps}"
    out = Path(args.work_dir) / "records" / f"{label}.json"
    if out.exists() and not args.force:
        print(f"{label}: done before ({out})", flush=True)
        return
    settings = matched(args.preset, steps, seed, args.eval_every)
    print(f"{label}: running ({time.strftime('%H:%M:%S')})", flush=True)
    runner = run_harl if code == "harl" else run_ours
    result = runner(args, settings, label, steps)
    result.update(
        code=code,
        seed=seed,
        t_max=steps,
        kind=kind,
        preset=args.preset,
        eval_every=args.eval_every,
        settings=[{"what": s.what, "harl": s.harl, "ours": list(s.ours)} for s in settings],
    )
    out.write_text(json.dumps(result, indent=1))
    print(
        f"{label}: final greedy return {result['final_return']:.2f}; {result['wall']:.0f} s wall, "
        f"{result['cpu']:.0f} s CPU, {steps / result['wall']:.0f} env steps/s, "
        f"{1e3 * result['cpu'] / steps:.2f} CPU ms per env step",
        flush=True,
    )


def _check_steps(args: argparse.Namespace, steps: int) -> None:
    warmup = PRESETS[args.preset]["warmup_steps"]
    if args.eval_every % N_ENVS or (steps - warmup) % args.eval_every:
        raise SystemExit(
            f"--steps minus the warm-up ({steps} - {warmup}) must be a multiple of --eval-every ({args.eval_every},"
            f" itself a multiple of {N_ENVS}), so that both codes evaluate at the last step"
        )


def cmd_run(args: argparse.Namespace) -> None:
    _check_steps(args, args.steps)
    jobs = [(code, seed) for seed in args.seeds for code in args.which]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for future in [pool.submit(_one, args, code, seed, args.steps, "learn") for code, seed in jobs]:
            future.result()


def cmd_speed(args: argparse.Namespace) -> None:
    """Both codes for the same short length, one after the other: their speed ratio from one machine state."""
    _check_steps(args, args.steps)
    for code in CODES:
        _one(args, code, 0, args.steps, "speed")


HARL_UNIFORM = """
import json, sys
import numpy as np
from harl.envs.pettingzoo_mpe.pettingzoo_mpe_env import PettingZooMPEEnv

episodes, seed = int(sys.argv[1]), int(sys.argv[2])
env = PettingZooMPEEnv({"scenario": "simple_spread_v2", "continuous_actions": False})
env.seed(seed)
rng = np.random.default_rng(seed)
returns, lengths = [], []
for _ in range(episodes):
    env.reset()
    total, steps, done = 0.0, 0, False
    while not done:
        _, _, rewards, dones, _, _ = env.step(rng.integers(0, 5, size=(3, 1)))
        assert all(r == rewards[0] for r in rewards)  # every agent gets the team's reward
        total += float(rewards[0][0])
        steps += 1
        done = all(dones)
    returns.append(total)
    lengths.append(steps)
print(json.dumps({"returns": returns, "lengths": lengths}))
"""


def cmd_envcheck(args: argparse.Namespace) -> None:
    """Uniformly random actions through both codes' env wrappers: the team returns must agree in distribution."""
    out = subprocess.run(
        [args.harl_python, "-c", HARL_UNIFORM, str(args.episodes), "0"],
        cwd=Path(args.harl_dir).resolve(),
        capture_output=True,
        text=True,
        check=True,
        env=single_thread_env(),
    )
    theirs = json.loads(out.stdout.strip().splitlines()[-1])
    ours = uniform_return_ours(args.episodes, seed=0)
    result = {}
    for name, data in (("harl", theirs), ("ours", ours)):
        r = np.asarray(data["returns"])
        result[name] = {
            "episodes": len(r),
            "mean": float(r.mean()),
            "std": float(r.std(ddof=1)),
            "sem": float(r.std(ddof=1) / np.sqrt(len(r))),
            "lengths": sorted(set(data["lengths"])),
        }
    gap = result["harl"]["mean"] - result["ours"]["mean"]
    z = gap / float(np.hypot(result["harl"]["sem"], result["ours"]["sem"]))
    result["difference"] = {"harl_minus_ours": gap, "z": z}
    path = Path(args.work_dir) / "records" / "envcheck.json"
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    if abs(z) > 4 or result["harl"]["lengths"] != [EPISODE_LIMIT] or result["ours"]["lengths"] != [EPISODE_LIMIT]:
        raise SystemExit("the two env wrappers disagree: their returns are not on one scale")


def uniform_return_ours(episodes: int, seed: int) -> dict[str, list[float]]:
    """Our env, composed from the matched overrides, played with uniformly random actions."""
    from hydra import compose, initialize_config_dir

    from softqmix import CONF_DIR
    from softqmix.config import register_configs
    from softqmix.envs.registry import make_env

    register_configs()
    env_overrides = [o for o in our_overrides(matched("small", 10_000, 0, 8)) if o.startswith("env")]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        env_cfg = compose(config_name="train", overrides=["algo=hasac", *env_overrides]).env
    env = make_env(env_cfg)
    rng = np.random.default_rng(seed)
    returns, lengths = [], []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        total, steps, done = 0.0, 0, False
        while not done:
            result = env.step(rng.integers(0, 5, size=3))
            total += result.reward
            steps += 1
            done = result.terminated or result.truncated
        returns.append(total)
        lengths.append(steps)
    env.close()
    return {"returns": returns, "lengths": lengths}


HARL_REEVAL = """
import json, sys
from pathlib import Path
import numpy as np
import torch
from harl.algorithms.actors.hasac import HASAC
from harl.envs.pettingzoo_mpe.pettingzoo_mpe_env import PettingZooMPEEnv

run_dir, first, episodes = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(1)
config = json.loads((run_dir / "config.json").read_text())
algo = config["algo_args"]
env = PettingZooMPEEnv(config["env_args"])
actors = []
for agent in range(env.n_agents):
    actor = HASAC({**algo["model"], **algo["algo"]}, env.observation_space[agent], env.action_space[agent])
    actor.restore(run_dir / "models", agent)
    actors.append(actor)
returns = []
with torch.no_grad():
    for seed in range(first, first + episodes):
        env.seed(seed - 1)  # the wrapper's reset() adds 1, then resets mpe2 with that seed
        obs, _, avail = env.reset()
        total, done = 0.0, False
        while not done:
            actions = np.stack(
                [
                    actor.get_actions(obs[i][None], np.asarray(avail[i])[None], False).numpy()[0]
                    for i, actor in enumerate(actors)
                ]
            )
            obs, _, rewards, dones, _, avail = env.step(actions)
            total += float(rewards[0][0])
            done = all(dones)
        returns.append(total)
print(json.dumps({"returns": returns}))
"""


def reeval_ours(run_dir: Path, first: int, episodes: int) -> list[float]:
    """Greedy episodes of our run's final checkpoint, each from mpe2's reset with seed first, first + 1, ..."""
    import torch

    from softqmix.envs.registry import make_env
    from softqmix.evaluate import greedy_episode, load_run

    torch.set_num_threads(1)
    cfg, module, _ = load_run(run_dir)
    env = make_env(cfg.env)
    returns = [
        sum(step.reward for step in greedy_episode(module, env, seed) if step is not None)
        for seed in range(first, first + episodes)
    ]
    env.close()
    return returns


def cmd_reeval(args: argparse.Namespace) -> None:
    """Every learning run's final policy, greedy, on the same `--episodes` starts for both codes: mpe2's reset with
    seeds REEVAL_FIRST, REEVAL_FIRST + 1, ... through each code's own wrapper (HARL's PettingZooMPEEnv resets
    mpe2 with the seed it is given, plus one; ours with the seed itself; with env.scale and env.landmark_scale 1
    both start from mpe2's positions unchanged), so the two codes meet the same episodes and the 32-episode eval
    noise of the logged finals drops out. HARL's side loads the actors its run saved after its last eval
    (models/actor_agent<i>.pt) with HARL's own classes, in HARL's venv; ours the run's final checkpoint."""
    folder = Path(args.work_dir) / "reeval"
    folder.mkdir(exist_ok=True)
    records = sorted((Path(args.work_dir) / "records").glob("learn_*_t*.json"))
    for path in records:
        record = json.loads(path.read_text())
        if record["preset"] != args.preset:
            continue
        out = folder / path.name
        if out.exists() and not args.force:
            continue
        started = time.perf_counter()
        if record["code"] == "harl":
            done = subprocess.run(
                [args.harl_python, "-c", HARL_REEVAL, record["run_dir"], str(REEVAL_FIRST), str(args.episodes)],
                cwd=Path(args.harl_dir).resolve(),
                capture_output=True,
                text=True,
                env=single_thread_env(),
            )
            if done.returncode != 0:
                raise RuntimeError(f"HARL re-evaluation of {record['run_dir']} failed:\n{done.stderr[-3000:]}")
            returns = json.loads(done.stdout.strip().splitlines()[-1])["returns"]
        else:
            returns = reeval_ours(Path(record["run_dir"]), REEVAL_FIRST, args.episodes)
        result = {
            "code": record["code"],
            "seed": record["seed"],
            "first_env_seed": REEVAL_FIRST,
            "returns": returns,
            "mean": float(np.mean(returns)),
        }
        out.write_text(json.dumps(result))
        print(f"{path.stem}: {result['mean']:.2f} over {len(returns)} episodes ({time.perf_counter() - started:.0f} s)")


def _last_mean(record: dict[str, Any], k: int) -> float:
    return float(np.mean(record["returns"][-k:]))


def permutation_p(a: list[float], b: list[float]) -> float:
    """Exact two-sided permutation p-value of the difference of two codes' seed means: the share of all ways to
    split the pooled seeds into groups of their sizes whose |mean difference| reaches the observed one. No model
    of the seed distribution: with 5 seeds a side there are 252 splits, so p cannot go below 2/252."""
    from itertools import combinations

    pooled = np.array([*a, *b], dtype=np.float64)
    observed = abs(float(np.mean(a)) - float(np.mean(b)))
    total, hits = 0, 0
    for picked in combinations(range(len(pooled)), len(a)):
        mask = np.zeros(len(pooled), dtype=bool)
        mask[list(picked)] = True
        total += 1
        hits += abs(pooled[mask].mean() - pooled[~mask].mean()) >= observed - 1e-12
    return hits / total


def _reeval_lines(args: argparse.Namespace, report: dict[str, Any], steps: int) -> list[str]:
    """The re-evaluation's table (`reeval`), where it ran: the final policies on the same starts for both codes."""
    from softqmix.results.stats import aggregate_seeds

    folder = Path(args.work_dir) / "reeval"
    found = [json.loads(p.read_text()) for p in sorted(folder.glob(f"learn_*_{args.preset}_s*_t{steps}.json"))]
    if not found:
        return []
    episodes = sorted({len(r["returns"]) for r in found})
    lines = [
        "",
        f"Final policies re-evaluated greedily on the same {episodes} starts for both codes (mpe2 reset seeds "
        f"{REEVAL_FIRST} on):",
        "",
        "| code | seeds | return, mean ± std over seeds | seed range (min to max) | per seed |",
        "|---|---|---|---|---|",
    ]
    report["reeval"] = {"episodes": episodes, "first_env_seed": REEVAL_FIRST, "codes": {}}
    for code in CODES:
        runs = sorted((r for r in found if r["code"] == code), key=lambda r: r["seed"])
        if not runs:
            continue
        means = np.array([r["mean"] for r in runs])
        agg = aggregate_seeds(means, reps=args.reps, confidence=0.95, seed=0)
        report["reeval"]["codes"][code] = {
            "seeds": [r["seed"] for r in runs],
            "mean_return": means.tolist(),
            "sem_per_seed": [float(np.std(r["returns"], ddof=1) / np.sqrt(len(r["returns"]))) for r in runs],
            "aggregate": agg.__dict__,
            "min": float(means.min()),
            "max": float(means.max()),
        }
        lines.append(
            f"| {LABELS[code]} | {len(runs)} | {agg.mean:.1f} ± {agg.std:.1f} | {means.min():.1f} to "
            f"{means.max():.1f} | " + ", ".join(f"s{r['seed']} {r['mean']:.1f}" for r in runs) + " |"
        )
    codes = report["reeval"]["codes"]
    if "harl" in codes and "ours" in codes:
        mean, theirs = codes["ours"]["aggregate"]["mean"], codes["harl"]
        place = "above" if mean > theirs["max"] else "within" if mean >= theirs["min"] else "below"
        report["reeval"]["ours_mean_against_harl_seed_range"] = place
        p_value = permutation_p(codes["ours"]["mean_return"], theirs["mean_return"])
        report["reeval"]["permutation_p"] = p_value
        lines += [
            "",
            f"Re-evaluated, our mean {mean:.1f} against HARL's seeds {theirs['min']:.1f} to {theirs['max']:.1f}: "
            f"**{place}**; difference of the means {mean - theirs['aggregate']['mean']:+.1f}, exact permutation "
            f"p = {p_value:.2f} over the seeds.",
        ]
    return lines


def cmd_report(args: argparse.Namespace) -> None:
    from softqmix.results.stats import aggregate_seeds

    records = [json.loads(p.read_text()) for p in sorted((Path(args.work_dir) / "records").glob("*_t*.json"))]
    learn = [r for r in records if r["kind"] == "learn" and r["preset"] == args.preset]
    lengths = sorted({r["t_max"] for r in learn})
    if len(lengths) != 1:
        raise SystemExit(f"learning runs of several lengths {lengths}: keep one in --work-dir")
    steps = lengths[0]
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "harl_commit": HARL_COMMIT,
        "preset": args.preset,
        "steps": steps,
        "codes": {},
    }
    rows = [
        "| code | seeds | final greedy return, mean ± std | IQM [95% CI] | seed range (min to max) | "
        f"mean of last {args.last} evals | env steps/s | wall s | CPU s | CPU ms per env step |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    per_seed = []
    for code in CODES:
        runs = sorted((r for r in learn if r["code"] == code), key=lambda r: r["seed"])
        if not runs:
            continue
        finals = np.array([r["final_return"] for r in runs])
        agg = aggregate_seeds(finals, reps=args.reps, confidence=0.95, seed=0)
        walls = np.array([r["wall"] for r in runs])
        cpus = np.array([r["cpu"] for r in runs])
        last = [_last_mean(r, args.last) for r in runs]
        entry = {
            "seeds": [r["seed"] for r in runs],
            "final_return": finals.tolist(),
            "aggregate": agg.__dict__,
            "min": float(finals.min()),
            "max": float(finals.max()),
            f"mean_of_last_{args.last}_evals": last,
            "eval_steps": runs[0]["steps"],
            "eval_returns": [r["returns"] for r in runs],
            "updates": [r["updates"] for r in runs],
            "wall_s": walls.tolist(),
            "cpu_s": cpus.tolist(),
            "env_steps_per_s": (steps / walls).tolist(),
            "cpu_ms_per_env_step": (1e3 * cpus / steps).tolist(),
            "command": runs[0]["command"],
            "settings": runs[0]["settings"],
        }
        report["codes"][code] = entry
        rows.append(
            f"| {LABELS[code]} | {len(runs)} | {agg.mean:.1f} ± {agg.std:.1f} | {agg.iqm:.1f} "
            f"[{agg.iqm_low:.1f}, {agg.iqm_high:.1f}] | {finals.min():.1f} to {finals.max():.1f} | "
            f"{np.mean(last):.1f} | {np.mean(steps / walls):.0f} | {walls.mean():.0f} | {cpus.mean():.0f} | "
            f"{1e3 * cpus.mean() / steps:.2f} |"
        )
        per_seed.append(
            f"- {LABELS[code]}: final "
            + ", ".join(f"s{r['seed']} {r['final_return']:.1f}" for r in runs)
            + f"; mean of the last {args.last} evals "
            + ", ".join(f"{v:.1f}" for v in last)
            + "; updates "
            + ", ".join(str(r["updates"]) for r in runs)
        )
    lines = [f"HASAC on Spread Simple, {steps} env steps, preset `{args.preset}` ({PRESETS[args.preset]})", ""]
    lines += rows
    envcheck = Path(args.work_dir) / "records" / "envcheck.json"
    if envcheck.exists():
        check = json.loads(envcheck.read_text())
        report["uniform_policy"] = check
        lines += [
            "",
            f"Uniform random policy (team return, {check['ours']['episodes']} episodes each): through HARL's "
            f"wrapper {check['harl']['mean']:.1f} ± {check['harl']['sem']:.1f} (s.e.), through ours "
            f"{check['ours']['mean']:.1f} ± {check['ours']['sem']:.1f}.",
        ]
    if "harl" in report["codes"] and "ours" in report["codes"]:
        theirs, ours = report["codes"]["harl"], report["codes"]["ours"]
        mean = ours["aggregate"]["mean"]
        place = "above" if mean > theirs["max"] else "within" if mean >= theirs["min"] else "below"
        report["ours_mean_against_harl_seed_range"] = place
        ratio = np.mean(theirs["cpu_ms_per_env_step"]) / np.mean(ours["cpu_ms_per_env_step"])
        report["harl_cpu_per_step_over_ours"] = float(ratio)
        key = f"mean_of_last_{args.last}_evals"
        last_ours, last_theirs = float(np.mean(ours[key])), theirs[key]
        last_place = "above" if last_ours > max(last_theirs) else "within" if last_ours >= min(last_theirs) else "below"
        p_final = permutation_p(ours["final_return"], theirs["final_return"])
        p_last = permutation_p(ours[key], last_theirs)
        report["ours_last_evals_against_harl_seed_range"] = last_place
        report["permutation_p_final"], report["permutation_p_last_evals"] = p_final, p_last
        lines += [
            "",
            f"Our mean final return {mean:.1f} against HARL's seeds {theirs['min']:.1f} to {theirs['max']:.1f}: "
            f"**{place}** (exact permutation p = {p_final:.2f}). Mean of each seed's last {args.last} evals: ours "
            f"{last_ours:.1f} against HARL's seeds {min(last_theirs):.1f} to {max(last_theirs):.1f}: "
            f"**{last_place}** (p = {p_last:.2f}). HARL needs {ratio:.2f}x our CPU per env step.",
        ]
    lines += ["", "Per seed:", "", *per_seed]
    lines += _reeval_lines(args, report, steps)
    speed = [r for r in records if r["kind"] == "speed" and r["preset"] == args.preset]
    if speed:
        report["speed"] = {r["code"]: {"steps": r["t_max"], "wall_s": r["wall"], "cpu_s": r["cpu"]} for r in speed}
        lines += ["", "| speed run (one after the other) | env steps | env steps/s | CPU ms per env step |"]
        lines += ["|---|---|---|---|"]
        lines += [
            f"| {LABELS[r['code']]} | {r['t_max']} | {r['t_max'] / r['wall']:.0f} | {1e3 * r['cpu'] / r['t_max']:.2f} |"
            for r in speed
        ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "speed", "envcheck", "reeval", "report"):
        p = sub.add_parser(name)
        p.add_argument("--work-dir", required=True, help="run outputs and records (not committed)")
        p.add_argument("--preset", choices=sorted(PRESETS), default="small")
        if name != "report":
            p.add_argument("--harl-dir", help="DEST/harl of setup_harl.sh (needed for HARL's runs)")
            p.add_argument("--harl-python", default="python", help="DEST/venv/bin/python of setup_harl.sh")
        if name in ("run", "speed", "reeval"):
            p.add_argument("--force", action="store_true", help="redo what has a record")
        if name in ("run", "speed"):
            p.add_argument("--steps", type=int, required=True, help="env steps per run, the warm-up included")
            p.add_argument("--eval-every", type=int, default=10_000, help="env steps between evals (x8)")
    sub.choices["run"].add_argument("--which", nargs="+", choices=CODES, default=list(CODES))
    sub.choices["run"].add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    sub.choices["run"].add_argument("--jobs", type=int, default=1, help="runs at a time")
    sub.choices["envcheck"].add_argument("--episodes", type=int, default=1000)
    sub.choices["reeval"].add_argument("--episodes", type=int, default=1000)
    sub.choices["report"].add_argument("--out", default="benchmarks/results/hasac_parity_mpe")
    sub.choices["report"].add_argument("--last", type=int, default=5, help="evals averaged per seed")
    sub.choices["report"].add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    args = parser.parse_args()
    for folder in ("records", "logs"):
        (Path(args.work_dir) / folder).mkdir(parents=True, exist_ok=True)
    commands = {
        "run": cmd_run,
        "speed": cmd_speed,
        "envcheck": cmd_envcheck,
        "reeval": cmd_reeval,
        "report": cmd_report,
    }
    commands[args.command](args)


if __name__ == "__main__":
    main()
