"""FIFO replay of whole episodes in preallocated tensors (no per-step Python objects)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from softqmix.envs.base import EnvInfo


@dataclass
class EpisodeBatch:
    """B episodes padded to T steps; `filled` marks real steps (docs/architecture.md, "Contracts").

    obs [B,T+1,n,o], state [B,T+1,s], avail [B,T+1,n,A], actions [B,T,n],
    reward [B,T], terminated [B,T], filled [B,T].
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
    """

    def __init__(self, capacity: int, info: EnvInfo, float_dtype: torch.dtype = torch.float32) -> None:
        if capacity < 1:
            raise ValueError(f"algo.buffer_size must be >= 1 episode, got {capacity}")
        self.capacity = capacity
        self.info = info
        self.dtypes = storage_dtypes(info, float_dtype)
        self.storage = self._allocate(capacity)
        self._next = 0
        self.size = 0

    def _allocate(self, capacity: int) -> EpisodeBatch:
        """Uninitialised memory: `insert` writes whole episode slots and only slots below `size` are ever read, so
        zero-filling a 10v10 buffer (10 GiB: 5.4 s here) would only delay the start and make every page resident
        at once. (A checkpoint saves every slot, as before; the unfilled ones are never loaded into a batch.)"""
        empty = EpisodeBatch.zeros(0, self.info)  # the shapes after the episode axis
        return EpisodeBatch(
            **{
                name: torch.empty(capacity, *getattr(empty, name).shape[1:], dtype=dtype)
                for name, dtype in self.dtypes.items()
            }
        )

    @property
    def nbytes(self) -> int:
        return sum(getattr(self.storage, f.name).nbytes for f in fields(EpisodeBatch))

    def release(self) -> None:
        """Drop the stored episodes and their memory now, whoever still holds this buffer."""
        self.storage = self._allocate(0)
        self.capacity, self._next, self.size = 0, 0, 0

    def insert(self, episodes: EpisodeBatch) -> None:
        """Copy finished episodes in, overwriting the oldest once full."""
        n = episodes.batch_size
        idx = (torch.arange(n) + self._next) % self.capacity
        for name, dtype in self.dtypes.items():
            getattr(self.storage, name)[idx] = getattr(episodes, name).to(dtype)
        self._next = (self._next + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def state_dict(self) -> dict[str, object]:
        return {
            "storage": {f.name: getattr(self.storage, f.name) for f in fields(EpisodeBatch)},
            "next": self._next,
            "size": self.size,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        for name, tensor in state["storage"].items():  # type: ignore[union-attr]
            getattr(self.storage, name).copy_(tensor)
        self._next, self.size = int(state["next"]), int(state["size"])  # type: ignore[arg-type]

    def can_sample(self, batch_size: int) -> bool:
        return self.size >= batch_size

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> EpisodeBatch:
        """B distinct episodes, cut to the longest filled length among them."""
        if not self.can_sample(batch_size):
            raise ValueError(f"buffer holds {self.size} episodes, cannot sample {batch_size}")
        idx = torch.randperm(self.size, generator=generator)[:batch_size]
        filled = self.storage.filled[idx]
        t = max(int(filled.sum(1).max().item()), 1)
        s = self.storage
        picked = EpisodeBatch(
            obs=s.obs[idx, : t + 1],
            state=s.state[idx, : t + 1],
            avail=s.avail[idx, : t + 1],
            actions=s.actions[idx, :t],
            reward=s.reward[idx, :t],
            terminated=s.terminated[idx, :t],
            filled=filled[:, :t],
        )
        return EpisodeBatch(**{name: getattr(picked, name).to(dtype) for name, dtype in BATCH_DTYPES.items()})
