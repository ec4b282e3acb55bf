"""Acting: the agent net with g and f turned into actions (greedy, epsilon-greedy or softmax)."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING

import torch
from torch import nn

from softqmix.algos.action_selection import epsilon_greedy, greedy_actions, sample_softmax
from softqmix.nets.agent import RNNAgent, build_agent_inputs

if TYPE_CHECKING:
    from softqmix.algos.value_factorisation import ValueFactorisationConfig


class Behaviour(str, Enum):
    """Exploration policy used while collecting training episodes."""

    eps_greedy = "eps_greedy"
    softmax = "softmax"  # softmax(f(g(Q))/alpha) over available actions


class BehaviourPolicy:
    """Maps per-env observations to per-agent actions with a given (agent, g, f).

    The learner's own instance shares the online nets. `detached_copy()` makes one with
    its own copies of the nets and its own RNG, refreshed from the learner's, so collection
    can run in another thread or process while the learner changes the online weights.
    """

    def __init__(
        self,
        agent: RNNAgent,
        g: nn.Module,
        f: nn.Module,
        cfg: ValueFactorisationConfig,
        obs_last_action: bool,
        n_actions: int,
        n_agents: int,
        epsilon_at: Callable[[], float],
        generator: torch.Generator | None = None,
    ) -> None:
        self.agent, self.g, self.f, self.cfg = agent, g, f, cfg
        self.obs_last_action, self.n_actions, self.n_agents = obs_last_action, n_actions, n_agents
        self.epsilon_at = epsilon_at
        self.generator = generator
        self.lock = threading.Lock()

    @property
    def device(self) -> torch.device:
        return next(self.agent.parameters()).device

    @property
    def behaviour_alpha(self) -> float:
        return self.cfg.behaviour_alpha if self.cfg.behaviour_alpha is not None else self.cfg.alpha

    def inputs(self, obs: torch.Tensor, last_actions: torch.Tensor) -> torch.Tensor:
        return build_agent_inputs(
            obs, last_actions if self.obs_last_action else None, self.n_actions, self.cfg.obs_agent_id
        )

    def logits(self, q: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Training-policy logits f(g(Q_i; s); s) / alpha for each agent and action."""
        return self.f(self.g(q, state), state) / self.behaviour_alpha

    def initial_hidden(self, n_envs: int) -> torch.Tensor:
        return self.agent.initial_hidden(n_envs * self.n_agents, device=self.device)

    @torch.no_grad()
    def act(
        self,
        obs: torch.Tensor,
        state: torch.Tensor,
        avail: torch.Tensor,
        last_actions: torch.Tensor,
        hidden: torch.Tensor,
        explore: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step for E envs: obs [E,n,o], state [E,S], avail [E,n,A] -> actions [E,n]."""
        device = self.device
        obs, state, avail = obs.to(device), state.to(device), avail.to(device)
        with self.lock:
            q, hidden = self.agent.step(self.inputs(obs, last_actions.to(device)), hidden)
            if not explore:
                return greedy_actions(q, avail), hidden
            if self.cfg.behaviour is Behaviour.eps_greedy:
                return epsilon_greedy(q, avail, self.epsilon_at(), self.generator), hidden
            actions, _ = sample_softmax(self.logits(q, state), avail, self.generator)
        return actions, hidden

    def detached_copy(self, seed: int | None) -> BehaviourPolicy:
        """Own copies of the nets (on the CPU) and an own RNG (seed None: the global one), for a collection
        thread or process, or for acting on the CPU while the learner trains on a GPU."""
        cpu = lambda m: copy.deepcopy(m).cpu().requires_grad_(False)  # noqa: E731
        return BehaviourPolicy(
            cpu(self.agent),
            cpu(self.g),
            cpu(self.f),
            self.cfg,
            self.obs_last_action,
            self.n_actions,
            self.n_agents,
            self.epsilon_at,
            torch.Generator().manual_seed(seed) if seed is not None else None,
        )

    def __getstate__(self) -> dict[str, object]:
        """Pickled for a spawned collection process: nets (their shared-memory weights travel as handles), config,
        the RNG's state (as bytes) and the schedule; not the lock, which belongs to this process's threads."""
        state = dict(self.__dict__)
        del state["lock"]
        if self.generator is not None:  # torch would send its state tensor through shared memory, which fails
            state["generator"] = bytes(self.generator.get_state().numpy())
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        generator = state.pop("generator")
        self.__dict__.update(state)
        self.lock = threading.Lock()
        self.generator = None
        if isinstance(generator, bytes):
            self.generator = torch.Generator()
            self.generator.set_state(torch.frombuffer(bytearray(generator), dtype=torch.uint8))

    def share_memory(self) -> BehaviourPolicy:
        """Put the nets' weights in shared memory, so a collection process (forked or spawned) sees every
        refresh."""
        for module in (self.agent, self.g, self.f):
            module.share_memory()
        return self

    def refresh_from(self, source: BehaviourPolicy) -> None:
        """Copy the source's current weights in (called after each update)."""
        with self.lock:
            for mine, theirs in ((self.agent, source.agent), (self.g, source.g), (self.f, source.f)):
                for p_mine, p_theirs in zip(mine.parameters(), theirs.parameters(), strict=True):
                    p_mine.copy_(p_theirs.detach())
