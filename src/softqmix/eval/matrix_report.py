"""The paper's Table 2 for a trained learner: Q_tot over all joint actions, greedy actions, policies."""

from __future__ import annotations

import itertools
from typing import Any

import torch

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
