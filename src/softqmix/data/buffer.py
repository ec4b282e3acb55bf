"""FIFO replay of whole episodes in preallocated tensors (no per-step Python objects)."""

from __future__ import annotations

import math
import mmap
from dataclasses import dataclass, fields

import torch

from softqmix.envs.base import EnvInfo


@dataclass
class EpisodeBatch:
    """B episodes padded to T steps; `filled` marks real steps (docs/architecture.md, "Contracts").

    obs [B,T+1,n,o], state [B,T+1,s], avail [B,T+1,n,A], actions [B,T,n],
    reward [B,T], terminated [B,T], filled [B,T].

    Every field is zero after the batch's last filled step (`recorded_steps`), as the collectors write it: the
    buffer and the collection process move only the steps before it.
    """

    obs: torch.Tensor
    state: torch.Tensor
    avail: torch.Tensor
    actions: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    filled: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.actions.shape[0]

    @property
    def max_t(self) -> int:
        return self.actions.shape[1]

    def recorded_steps(self) -> int:
        """Steps up to the last one any episode filled; the fields hold only zeros after them (the observation
        fields one step further: their slot after an episode's last step holds its final observation)."""
        filled_steps = torch.nonzero(self.filled.any(0))
        return int(filled_steps[-1]) + 1 if filled_steps.numel() else 0

    def head(self, steps: int) -> EpisodeBatch:
        """Views of the first `steps` steps (and the observation after them)."""
        return EpisodeBatch(**{f.name: _steps_of(getattr(self, f.name), f.name, steps) for f in fields(self)})

    def padded_to(self, max_t: int) -> EpisodeBatch:
        """This batch in a `max_t`-step layout, zeros after its own steps."""
        padded = {}
        for f in fields(self):
            value = getattr(self, f.name)
            full = value.new_zeros((value.shape[0], max_t + value.shape[1] - self.max_t, *value.shape[2:]))
            full[:, : value.shape[1]] = value
            padded[f.name] = full
        return EpisodeBatch(**padded)

    def select(self, rows: torch.Tensor) -> EpisodeBatch:
        return EpisodeBatch(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    def to(self, device: torch.device | str) -> EpisodeBatch:
        """On a CUDA device through pinned memory, without waiting for the copy (the update's first kernel
        waits on the GPU, not on the host)."""
        device = torch.device(device)
        if device.type == "cuda":
            return EpisodeBatch(
                **{f.name: getattr(self, f.name).pin_memory().to(device, non_blocking=True) for f in fields(self)}
            )
        return EpisodeBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @classmethod
    def concat(cls, batches: list[EpisodeBatch]) -> EpisodeBatch:
        """Episodes of several collection rounds in one batch (same env, so the same T)."""
        return cls(**{f.name: torch.cat([getattr(b, f.name) for b in batches]) for f in fields(cls)})

    @classmethod
    def zeros(cls, n_episodes: int, info: EnvInfo) -> EpisodeBatch:
        b, t, n = n_episodes, info.episode_limit, info.n_agents
        return cls(
            obs=torch.zeros(b, t + 1, n, info.obs_dim),
            state=torch.zeros(b, t + 1, info.state_dim),
            avail=torch.zeros(b, t + 1, n, info.n_actions),
            actions=torch.zeros(b, t, n, dtype=torch.long),
            reward=torch.zeros(b, t),
            terminated=torch.zeros(b, t),
            filled=torch.zeros(b, t),
        )


FINAL_OBSERVATION_FIELDS = ("obs", "state", "avail")  # T+1 steps: the last one is the observation after step T


def _steps_of(value: torch.Tensor, name: str, steps: int) -> torch.Tensor:
    return value[:, : steps + (1 if name in FINAL_OBSERVATION_FIELDS else 0)]


def lazy_zeros(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """Zeros whose pages become resident only when first written, one 4 KiB page at a time: an anonymous memory
    map, which the kernel hands out zeroed. torch.zeros writes every byte up front (gigabytes for a replay buffer,
    at the start of a run), and numpy's calloc-backed zeros ask for huge pages, so that a first write clears 2 MiB
    (SMAX inserts 7x slower: benchmarks/replay_insert_cost.py)."""
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes == 0:
        return torch.zeros(shape, dtype=dtype)
    return torch.frombuffer(mmap.mmap(-1, nbytes), dtype=torch.uint8).view(dtype).view(shape)


def storage_dtypes(info: EnvInfo, float_dtype: torch.dtype = torch.float32) -> dict[str, torch.dtype]:
    """How each field is stored: masks and flags as uint8 and actions as the smallest integer that holds
    them, all exact; observations and states in `float_dtype` (float32 exact, float16 halves them)."""
    action_dtype = torch.int8 if info.n_actions <= 127 else torch.int16
    return {
        "obs": float_dtype,
        "state": float_dtype,
        "avail": torch.uint8,
        "actions": action_dtype,
        "reward": torch.float32,
        "terminated": torch.uint8,
        "filled": torch.uint8,
    }


# what a sampled batch holds, whatever the storage: the learner's types
BATCH_DTYPES = {f.name: torch.long if f.name == "actions" else torch.float32 for f in fields(EpisodeBatch)}


class EpisodeBuffer:
    """A ring of `capacity` episodes; sampling is uniform without replacement, as in pymarl.

    Stored compactly (storage_dtypes: a quarter of the float32 bytes for masks and flags, an eighth for
    actions); sampled batches come back in float32 / int64.

    Episodes are padded to the env's limit, but an insert writes only the steps that hold data: those the round
    recorded, and in a reused slot as many as its old episode wrote (to zero them). On SMAX, where battles last
    about a quarter of the 200-step limit, writing whole slots made the kernel clear fresh pages that we then filled
    with zeros: 4.7% of the learner's time in a 100k-step run (docs/results.md, section 11).
    """

    def __init__(self, capacity: int, info: EnvInfo, float_dtype: torch.dtype = torch.float32) -> None:
        if capacity < 1:
            raise ValueError(f"algo.buffer_size must be >= 1 episode, got {capacity}")
        self.capacity = capacity
        self.info = info
        self.dtypes = storage_dtypes(info, float_dtype)
        self.storage = self._allocate(capacity)
        # steps of each slot that may hold data (non-zero values); every step after them is zero
        self.written_steps = torch.zeros(capacity, dtype=torch.long)
        self._next = 0
        self.size = 0

    def _allocate(self, capacity: int) -> EpisodeBatch:
        """Zeros that become resident only where written (`lazy_zeros`): zero-filling a 10v10 buffer (10 GiB: 5.4 s
        here) would delay the start and make every page resident at once."""
        empty = EpisodeBatch.zeros(0, self.info)  # the shapes after the episode axis
        return EpisodeBatch(
            **{
                name: lazy_zeros((capacity, *getattr(empty, name).shape[1:]), dtype)
                for name, dtype in self.dtypes.items()
            }
        )

    @property
    def nbytes(self) -> int:
        return sum(getattr(self.storage, f.name).nbytes for f in fields(EpisodeBatch))

    def release(self) -> None:
        """Drop the stored episodes and their memory now, whoever still holds this buffer."""
        self.storage = self._allocate(0)
        self.written_steps = torch.zeros(0, dtype=torch.long)
        self.capacity, self._next, self.size = 0, 0, 0

    def insert(self, episodes: EpisodeBatch) -> None:
        """Copy finished episodes in, overwriting the oldest once full."""
        if episodes.max_t != self.info.episode_limit:
            raise ValueError(
                f"episodes of {episodes.max_t} steps for a buffer of {self.info.episode_limit}-step slots; "
                "pad them with EpisodeBatch.padded_to"
            )
        recorded = episodes.recorded_steps()
        n = episodes.batch_size
        if n > self.capacity:  # only the newest `capacity` episodes would survive
            episodes, n = (
                EpisodeBatch(**{f.name: getattr(episodes, f.name)[-self.capacity :] for f in fields(episodes)}),
                self.capacity,
            )
        first = 0
        while first < n:  # at most two runs of consecutive slots: up to the end of the ring, then from its start
            slot = self._next
            count = min(n - first, self.capacity - slot)
            slots = slice(slot, slot + count)
            steps = max(recorded, int(self.written_steps[slots].max()))
            for name in self.dtypes:
                source = _steps_of(getattr(episodes, name)[first : first + count], name, steps)
                _steps_of(getattr(self.storage, name)[slots], name, steps).copy_(source)
            self.written_steps[slots] = recorded
            first += count
            self._next = (slot + count) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def state_dict(self) -> dict[str, object]:
        return {
            "storage": {f.name: getattr(self.storage, f.name) for f in fields(EpisodeBatch)},
            "next": self._next,
            "size": self.size,
            "written_steps": self.written_steps,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        for name, tensor in state["storage"].items():  # type: ignore[union-attr]
            getattr(self.storage, name).copy_(tensor)
        self._next, self.size = int(state["next"]), int(state["size"])  # type: ignore[arg-type]
        # a buffer saved before slots kept their written steps may hold data anywhere in a slot
        written = state.get("written_steps")
        if written is None:
            self.written_steps.fill_(self.info.episode_limit)
        else:
            self.written_steps.copy_(written)  # type: ignore[arg-type]

    def can_sample(self, batch_size: int) -> bool:
        return self.size >= batch_size

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> EpisodeBatch:
        """B distinct episodes, cut to the longest filled length among them."""
        if not self.can_sample(batch_size):
            raise ValueError(f"buffer holds {self.size} episodes, cannot sample {batch_size}")
        idx = torch.randperm(self.size, generator=generator)[:batch_size]
        t = max(int(self.storage.filled[idx].sum(1).max().item()), 1)
        return EpisodeBatch(
            **{
                name: _steps_of(getattr(self.storage, name), name, t)[idx].to(dtype)
                for name, dtype in BATCH_DTYPES.items()
            }
        )
