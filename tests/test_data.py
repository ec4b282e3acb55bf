"""Replay buffer and collector: what is stored is exactly what happened."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from softqmix.data.buffer import EpisodeBatch, EpisodeBuffer
from softqmix.data.collector import EpisodeCollector
from softqmix.data.collector_process import _batch_from_numpy, _batch_to_numpy
from softqmix.envs.base import EnvInfo
from softqmix.nets.agent import RNNAgent, build_agent_inputs
from tests.helpers import CorridorEnv, SeededRandomActor

INFO = EnvInfo(n_agents=2, n_actions=3, obs_dim=2, state_dim=1, episode_limit=4)


def _episodes(ids: list[int], lengths: list[int]) -> EpisodeBatch:
    batch = EpisodeBatch.zeros(len(ids), INFO)
    for row, (ep, length) in enumerate(zip(ids, lengths, strict=True)):
        batch.reward[row, :length] = ep
        batch.filled[row, :length] = 1
    return batch


def test_buffer_is_fifo_and_overwrites_the_oldest() -> None:
    buf = EpisodeBuffer(capacity=3, info=INFO)
    buf.insert(_episodes([1, 2], [4, 4]))
    buf.insert(_episodes([3, 4], [4, 4]))
    assert buf.size == 3
    assert sorted(buf.storage.reward[:, 0].tolist()) == [2.0, 3.0, 4.0]


def test_sample_is_without_replacement_and_cut_to_the_longest_filled() -> None:
    buf = EpisodeBuffer(capacity=8, info=INFO)
    buf.insert(_episodes([1, 2, 3, 4], [1, 2, 2, 1]))
    batch = buf.sample(4, torch.Generator().manual_seed(0))
    assert sorted(batch.reward[:, 0].tolist()) == [1.0, 2.0, 3.0, 4.0]
    assert batch.max_t == 2 and batch.obs.shape[1] == 3


def test_slots_never_filled_are_never_sampled() -> None:
    """Whatever the slots beyond `size` hold (here NaN and -1: a resumed buffer's or a caller's leftovers), it must
    not reach a batch, whatever the draws."""
    buf = EpisodeBuffer(capacity=16, info=INFO)
    for name in ("obs", "state", "avail", "reward", "filled"):
        getattr(buf.storage, name).fill_(float("nan") if name in ("obs", "state") else -1)
    buf.insert(_episodes([1, 2, 3], [4, 2, 1]))
    for seed in range(50):
        batch = buf.sample(3, torch.Generator().manual_seed(seed))
        assert torch.isfinite(batch.obs).all() and torch.isfinite(batch.state).all()
        assert sorted(batch.reward[:, 0].tolist()) == [1.0, 2.0, 3.0] and batch.max_t == 4
        assert set(batch.filled.unique().tolist()) <= {0.0, 1.0}


class _FixedActor:
    """Plays a scripted joint action per step."""

    def __init__(self, script: list[list[int]]) -> None:
        self.script, self.t = script, 0

    def initial_hidden(self, n_envs: int) -> torch.Tensor:
        self.t = 0
        return torch.zeros(n_envs)

    def act(self, obs, state, avail, last_actions, hidden, explore):  # type: ignore[no-untyped-def]
        a = torch.tensor(self.script[self.t]).expand(obs.shape[0], -1)
        self.t += 1
        return a, hidden


def test_collector_records_termination_truncation_and_final_obs() -> None:
    collector = EpisodeCollector([CorridorEnv(limit=4)], seed=0)
    # terminates at step 2 (both pick 1)
    batch, stats = collector.collect(_FixedActor([[0, 1], [0, 0], [1, 1], [0, 0]]), explore=True)
    assert stats.lengths == [3] and stats.returns == [0 + 1 + 2]
    assert batch.filled[0].tolist() == [1, 1, 1, 0]
    assert batch.terminated[0].tolist() == [0, 0, 1, 0]
    assert batch.state[0, :4, 0].tolist() == [0, 1, 2, 3]  # obs after the last step is stored
    # never terminates: truncated at the limit, not terminated, the obs after step 3 is kept
    batch, stats = collector.collect(_FixedActor([[0, 0]] * 4), explore=True)
    assert stats.lengths == [4]
    assert batch.terminated[0].tolist() == [0, 0, 0, 0] and batch.filled[0].tolist() == [1, 1, 1, 1]
    assert batch.state[0, 4, 0].item() == 4


def test_whole_sequence_unroll_equals_step_by_step_acting() -> None:
    torch.manual_seed(0)
    agent = RNNAgent(input_dim=2 + 3 + 2, hidden_dim=8, n_actions=3)
    obs = torch.randn(2, 5, 2, 2)
    actions = torch.randint(0, 3, (2, 4, 2))
    last = torch.cat([torch.full_like(actions[:, :1], -1), actions], dim=1)
    inputs = build_agent_inputs(obs, last, 3, agent_id=True)
    unrolled = agent.unroll(inputs)
    hidden = agent.initial_hidden(2 * 2)
    for t in range(5):
        q, hidden = agent.step(inputs[:, t], hidden)
        torch.testing.assert_close(q, unrolled[:, t], atol=1e-5, rtol=1e-5)


SMAX_10V10 = EnvInfo(n_agents=10, n_actions=16, obs_dim=257, state_dim=240, episode_limit=200)


def _random_episodes(info: EnvInfo, n: int) -> EpisodeBatch:
    gen = torch.Generator().manual_seed(0)
    batch = EpisodeBatch.zeros(n, info)
    batch.obs.copy_(torch.rand(batch.obs.shape, generator=gen) * 2 - 1)
    batch.state.copy_(torch.rand(batch.state.shape, generator=gen) * 2 - 1)
    batch.avail.copy_((torch.rand(batch.avail.shape, generator=gen) > 0.5).float())
    batch.actions.copy_(torch.randint(0, info.n_actions, batch.actions.shape, generator=gen))
    batch.reward.copy_(torch.randn(batch.reward.shape, generator=gen))
    batch.terminated[:, -1] = 1.0
    batch.filled.fill_(1.0)
    return batch


def test_compact_storage_gives_back_exactly_what_went_in() -> None:
    """Masks and flags stored as uint8 and actions as int8: exact, and the batch comes back in float32/int64."""
    info = EnvInfo(n_agents=3, n_actions=11, obs_dim=5, state_dim=4, episode_limit=6)
    episodes = _random_episodes(info, 4)
    buf = EpisodeBuffer(capacity=4, info=info)
    buf.insert(episodes)
    sampled = buf.sample(4, torch.Generator().manual_seed(0))
    order = torch.randperm(4, generator=torch.Generator().manual_seed(0))
    for name in ("obs", "state", "avail", "actions", "reward", "terminated", "filled"):
        got, want = getattr(sampled, name), getattr(episodes, name)[order]
        assert got.dtype == want.dtype and torch.equal(got, want), name


def test_storage_bytes_for_smax_10v10() -> None:
    """Per 10v10 episode: obs 201 x 10 x 257 floats dominate (2.07 of 2.41 MB in float32); compact masks,
    actions and flags save 5% (2.29 MB), and float16 observations and states halve the rest (1.16 MB),
    within 1e-3 of the values."""
    exact = EpisodeBuffer(capacity=2, info=SMAX_10V10)
    half = EpisodeBuffer(capacity=2, info=SMAX_10V10, float_dtype=torch.float16)
    float32_everything = sum(t.nbytes for t in vars(EpisodeBatch.zeros(2, SMAX_10V10)).values())
    assert exact.nbytes == 2 * (201 * 10 * 257 * 4 + 201 * 240 * 4 + 201 * 10 * 16 + 200 * 10 + 200 * 4 + 2 * 200)
    assert exact.nbytes < 0.96 * float32_everything and half.nbytes < 0.51 * exact.nbytes
    episodes = _random_episodes(SMAX_10V10, 2)
    half.insert(episodes)
    sampled = half.sample(2, torch.Generator().manual_seed(0))
    original = episodes.obs[torch.randperm(2, generator=torch.Generator().manual_seed(0))]
    assert sampled.obs.dtype == torch.float32 and (sampled.obs - original).abs().max() < 1e-3


FIELDS = ("obs", "state", "avail", "actions", "reward", "terminated", "filled")


def _round_of_corridors(limit: int = 30) -> EpisodeBatch:
    """Four corridors of random lengths, none reaching the limit (seeded)."""
    collector = EpisodeCollector([CorridorEnv(limit=limit, n_actions=2) for _ in range(4)], seed=0)
    batch, stats = collector.collect(SeededRandomActor(n_actions=2, seed=0), explore=True)
    assert len(set(stats.lengths)) > 1 and max(stats.lengths) < limit
    return batch


def test_a_round_is_zero_after_its_recorded_steps_and_crosses_the_pipe_unchanged() -> None:
    """The collectors' contract that the buffer and the collection process rely on: nothing after the last step
    any episode filled (the final observation one step further). Between an episode's end and that step the
    finished corridor holds its last observation, so the transfer keeps those steps; the message carries only
    the recorded ones and the learner gets the whole batch back."""
    batch = _round_of_corridors()
    steps = batch.recorded_steps()
    assert steps == int(batch.filled.sum(1).max())
    for name in FIELDS:
        after = getattr(batch, name)[:, steps + (1 if name in ("obs", "state", "avail") else 0) :]
        assert not after.any(), name
    shorter = int(batch.filled.sum(1).min())
    assert batch.state[:, shorter + 1 : steps + 1].any()  # a finished corridor's last observation, kept
    max_t, arrays = _batch_to_numpy(batch)
    assert max_t == batch.max_t and arrays["actions"].shape[1] == steps and arrays["obs"].shape[1] == steps + 1
    back = _batch_from_numpy(pickle.loads(pickle.dumps((max_t, arrays))))
    for name in FIELDS:
        got, want = getattr(back, name), getattr(batch, name)
        assert got.dtype == want.dtype and torch.equal(got, want), name


def test_an_insert_writes_the_recorded_steps_and_clears_what_the_slot_held_after_them() -> None:
    """A slot reused by a shorter episode holds exactly that episode and zeros, as if the whole slot had been
    written; the steps each slot may hold data in are tracked, and a buffer saved before they were tracked
    is treated as holding data in every step."""
    info = INFO
    long_round = _episodes([7], [4])
    long_round.obs.fill_(3.0)  # data in every step, the final observation included
    short_round = _episodes([9], [1])
    short_round.obs[:, :2] = 5.0
    buf = EpisodeBuffer(capacity=1, info=info)
    buf.insert(long_round)
    assert buf.written_steps.tolist() == [4]
    saved = buf.state_dict()
    buf.insert(short_round)
    assert buf.written_steps.tolist() == [1]
    for name in FIELDS:
        assert torch.equal(getattr(buf.storage, name).float(), getattr(short_round, name).float()), name
    old = EpisodeBuffer(capacity=1, info=info)
    old.load_state_dict({key: value for key, value in saved.items() if key != "written_steps"})
    assert old.written_steps.tolist() == [info.episode_limit]
    old.insert(short_round)
    assert torch.equal(old.storage.obs, short_round.obs)


def test_the_storage_is_zero_and_takes_memory_only_where_written() -> None:
    """A 1 GiB buffer becomes resident only as episodes arrive, and what was never written reads as zero."""
    info = EnvInfo(n_agents=5, n_actions=11, obs_dim=127, state_dim=120, episode_limit=200)
    page = os.sysconf("SC_PAGE_SIZE")

    def resident() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * page

    episodes = EpisodeBatch.zeros(200, info)  # whole slots: 120 MiB
    episodes.filled[:, 0] = 1.0  # episodes that last one step
    before = resident()
    buf = EpisodeBuffer(capacity=2000, info=info)
    assert buf.nbytes > 2**30
    assert resident() - before < 64 * 2**20
    buf.insert(episodes)
    assert resident() - before < 64 * 2**20
    assert not buf.storage.obs[1990:].any() and not buf.storage.state[:16, 2:].any()
