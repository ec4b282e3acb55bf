"""The paper's Table 2 for a trained learner: Q_tot over all joint actions, greedy actions, policies."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from softqmix.algos.action_selection import epsilon_greedy_probs, greedy_actions, masked_logits
from softqmix.algos.behaviour import Behaviour


@torch.no_grad()
def matrix_game_report(learner: Any, env: Any) -> dict[str, Any]:
    """Evaluate the learned joint value of a value-factorisation learner at the game's only decision state.

    Q_tot(a_1, a_2) = mixer(g_1(Q_1(a_1)), g_2(Q_2(a_2)); s), which is what the critic
    was trained to fit; each agent's training policy is what it samples while exploring.
    """
    first = env.reset(seed=None)
    info = env.info()
    n, n_actions = info.n_agents, info.n_actions
    device = next(learner.parameters()).device
    obs = torch.as_tensor(first.obs, dtype=torch.float32, device=device).unsqueeze(0)
    state = torch.as_tensor(first.state, dtype=torch.float32, device=device).unsqueeze(0)
    avail = torch.as_tensor(first.avail, dtype=torch.float32, device=device).unsqueeze(0)
    last = torch.full((1, n), -1, dtype=torch.long, device=device)
    q, _ = learner.agent.step(learner.behaviour.inputs(obs, last), learner.behaviour.initial_hidden(1))
    g = learner.g(q, state)  # [1, n, A]

    joint = list(itertools.product(range(n_actions), repeat=n))
    picks = torch.tensor(joint, device=device)  # [J, n]
    g_taken = g[0].T[picks, torch.arange(n, device=device)]  # [J, n]
    many = len(joint)
    q_tot = learner.mix(
        learner.mixer, g_taken, state.expand(many, -1), picks, g.expand(many, -1, -1), avail.expand(many, -1, -1)
    )
    if learner.mixer_spec.per_agent:
        q_tot = q_tot.mean(-1)  # independent learners: each Q_i estimates the team value itself
    table = q_tot.view(*([n_actions] * n))

    if learner.cfg.behaviour is Behaviour.softmax:
        probs = torch.softmax(learner.policy_logits(q, state), dim=-1)[0]
    else:
        probs = epsilon_greedy_probs(q, avail, learner.epsilon(learner.progress.t_env))[0]
    greedy = greedy_actions(q, avail)[0]
    best_joint = divmod(int(table.argmax()), n_actions) if n == 2 else None
    return {
        "q_tot": table.cpu().tolist(),
        "q_agents": q[0].cpu().tolist(),
        "greedy_actions": greedy.cpu().tolist(),
        "policy_probs": probs.cpu().tolist(),
        "q_tot_argmax": list(best_joint) if best_joint is not None else None,
    }


@torch.no_grad()
def matrix_policy_report(learner: Any, env: Any) -> dict[str, Any]:
    """For learners without a joint value (MAPPO, FOP): each agent's policy and greedy action."""
    first = env.reset(seed=None)
    n = env.info().n_agents
    device = next(learner.parameters()).device
    obs = torch.as_tensor(first.obs, dtype=torch.float32, device=device).unsqueeze(0)
    avail = torch.as_tensor(first.avail, dtype=torch.float32, device=device).unsqueeze(0)
    last = torch.full((1, n), -1, dtype=torch.long, device=device)
    actor = learner.actor
    logits, _ = actor.policy.step(actor.inputs(obs, last), actor.initial_hidden(1))
    probs = torch.softmax(masked_logits(logits, avail), dim=-1)[0]
    greedy = greedy_actions(logits, avail)[0]
    return {"q_tot": None, "greedy_actions": greedy.cpu().tolist(), "policy_probs": probs.cpu().tolist()}


def format_matrix_report(report: dict[str, Any], payoff: list[list[float]], names: list[str] | None) -> str:
    """Plain-text rendering in the layout of the paper's Table 2."""
    n_actions = len(payoff)
    names = names or [chr(ord("A") + i) for i in range(n_actions)]
    width = 8
    lines = []
    if report["q_tot"] is not None:
        lines.append("Learned Q_tot (rows: agent 1, columns: agent 2)   [payoff]")
        lines.append(" " * 6 + "".join(f"{name:>{width}}" for name in names))
        for i, row in enumerate(report["q_tot"]):
            cells = "".join(f"{v:>{width}.2f}" for v in row)
            pay = ", ".join(f"{p:g}" for p in payoff[i])
            lines.append(f"{names[i]:>6}{cells}   [{pay}]")
    for agent, (probs, greedy) in enumerate(zip(report["policy_probs"], report["greedy_actions"], strict=True)):
        dist = "  ".join(f"P({names[a]})={p:.3f}" for a, p in enumerate(probs))
        lines.append(f"agent {agent + 1}: greedy {names[greedy]}   training policy {dist}")
    return "\n".join(lines)


@dataclass(frozen=True)
class StudiedRate:
    """How often the greedy joint action was the optimum at one setting of the study in docs/results.md §12:
    (seeds that found it, seeds run) for our code and, where it was run, the authors' released code."""

    ours: tuple[int, int]
    authors: tuple[int, int] | None = None


STUDY_SECTION = "docs/results.md §12"
TABLE_1 = [[8.0, -12.0, -12.0], [-12.0, 0.0, 0.0], [-12.0, 0.0, 0.0]]
# The settings every run of the study shares: the authors' code's on the paper's Table 1 game
# (experiment=paper_matrix; `python train.py` trains the same way, only its greedy tests are larger).
STUDY_SHARED: dict[str, Any] = {
    "env.family": "matrix",
    "env.payoff": TABLE_1,
    "batch_size_run": 4,
    "algo.name": "soft_qmix",
    "algo.agent": "rnn",
    "algo.rnn_hidden_dim": 64,
    "algo.batch_size": 128,
    "algo.buffer_size": 5000,
    "algo.updates_per_collect": 1,
    "algo.burn_in_episodes": 0,
    "algo.optimizer": "adam",
    "algo.critic_lr": 1e-3,
    "algo.policy_lr": 1e-3,
    "algo.grad_norm_clip": 10.0,
    "algo.grad_clip_mode": "per_optimizer",
    "algo.gamma": 0.99,
    "algo.td_lambda": 0.4,
    "algo.target_update_interval": 200,
    "algo.target_update_unit": "episodes",
    "algo.reward_scale": 1.0,
    "algo.standardise_rewards": False,
    "algo.behaviour": "softmax",
    "algo.behaviour_alpha": None,
    "algo.soft_target": True,
    "algo.use_f": True,
    "algo.use_g": True,
    "algo.nonneg": True,
}
# What each studied form of Soft-QMIX sets on top (conf/algo/soft_qmix.yaml, conf/ablation/{release,full}.yaml).
STUDY_FORMS: dict[str, dict[str, Any]] = {
    "default": {"algo.mixer": "sum", "algo.g_residual": True, "algo.weighted_td": True},
    "release": {"algo.mixer": "sum", "algo.g_residual": True, "algo.weighted_td": True},
    "full": {"algo.mixer": "qmix", "algo.g_residual": False, "algo.weighted_td": False},
}
STUDY_MASKED = {"default": True, "release": False, "full": True}  # algo.mask_entropy_after_termination
# The study's counts, written by `benchmarks/parity/matrix_parity.py report --rates-out` next to this module so an
# installed package can quote them (the full tables are in benchmarks/results/matrix_parity/).
STUDY_RATES_FILE = Path(__file__).with_name("matrix_study_rates.json")


def load_study_rates(path: Path = STUDY_RATES_FILE) -> dict[tuple[str, float, int], StudiedRate]:
    """(form, alpha, t_max) -> the seeds whose greedy joint action was the optimum, per code."""
    rates = {}
    for row in json.loads(path.read_text()):
        authors = tuple(row["authors"]) if row["authors"] is not None else None
        rates[(row["form"], float(row["alpha"]), int(row["t_max"]))] = StudiedRate(tuple(row["ours"]), authors)
    return rates


STUDY_RATES: dict[tuple[str, float, int], StudiedRate] = load_study_rates()
_MISSING = object()


def _same(value: Any, expected: Any) -> bool:
    if isinstance(value, Enum):
        value = value.value
    if isinstance(expected, list):
        return (
            isinstance(value, list | tuple)
            and len(value) == len(expected)
            and all(_same(v, e) for v, e in zip(value, expected, strict=True))
        )
    if isinstance(expected, float) and isinstance(value, int | float) and not isinstance(value, bool):
        return math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-12)
    return value == expected


def studied_rate(cfg: Any) -> StudiedRate | None:
    """The study's counts for the run's settings, or None when the study did not run them."""
    plain = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg

    def select(key: str) -> Any:
        node: Any = plain
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return _MISSING
            node = node[part]
        return node

    if not all(_same(select(key), value) for key, value in STUDY_SHARED.items()):
        return None
    for (form, alpha, t_max), rate in STUDY_RATES.items():
        settings = {
            **STUDY_FORMS[form],
            "algo.variant": form,
            "algo.mask_entropy_after_termination": STUDY_MASKED[form],
            "algo.alpha": alpha,
            "t_max": t_max,
        }
        if all(_same(select(key), value) for key, value in settings.items()):
            return rate
    return None


def _joint(actions: list[int] | tuple[int, ...], names: list[str]) -> str:
    return "(" + ", ".join(names[a] for a in actions) + ")"


def matrix_verdict(
    report: dict[str, Any], payoff: list[list[float]], names: list[str] | None, rate: StudiedRate | None
) -> str:
    """One line: is the greedy joint action the game's optimum, and how often the study saw that at these settings."""
    names = names or [chr(ord("A") + i) for i in range(len(payoff))]
    greedy = tuple(report["greedy_actions"])
    best = max(v for row in payoff for v in row)
    optima = [(i, j) for i, row in enumerate(payoff) for j, v in enumerate(row) if v == best]
    earned = payoff[greedy[0]][greedy[1]]
    if earned == best:
        line = f"verdict: the greedy joint action {_joint(greedy, names)} is the optimum (payoff {best:g})."
    else:
        line = (
            f"verdict: the greedy joint action {_joint(greedy, names)} is NOT the optimum "
            f"{_joint(optima[0], names)}: it pays {earned:g} against {best:g}."
        )
    if rate is None:
        return line + f" These settings are not among those studied in {STUDY_SECTION}."
    ours = f"{rate.ours[0]}/{rate.ours[1]} seeds of this code"
    theirs = (
        f" and {rate.authors[0]}/{rate.authors[1]} of the authors' released code"
        if rate.authors is not None
        else " (the authors' code was not run at these settings)"
    )
    return line + f" With these settings the optimum was the greedy joint action in {ours}{theirs} ({STUDY_SECTION})."
