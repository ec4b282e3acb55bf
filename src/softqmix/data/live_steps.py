"""The (episode, step) cells of a padded replay batch that belong to an episode, for per-step work on them only.

A replay batch is padded to its longest episode; on SMAX about 40% of its cells are padding, whose values every
loss and target masks out. Work that treats each step on its own (hypernetworks, mixers, g and f) runs on the
live cells, gathered into rows, and its results are put back into the padded layout with zeros elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LiveSteps:
    """Rows of a [B, S, ...] grid: `index` holds the flat positions b * S + t of the live cells (None: all)."""

    episodes: int
    steps: int
    index: torch.Tensor | None = None

    @classmethod
    def everything(cls, episodes: int, steps: int) -> LiveSteps:
        return cls(episodes, steps)

    @classmethod
    def of(cls, lengths: torch.Tensor, steps: int) -> LiveSteps:
        """The first lengths[b] steps of each episode b ([B], each 1..steps)."""
        inside = torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]
        return cls(int(lengths.shape[0]), steps, inside.reshape(-1).nonzero().squeeze(1))

    def take(self, grid: torch.Tensor) -> torch.Tensor:
        """[B, S, ...] -> [R, ...], the live cells in episode-major order."""
        flat = grid.reshape(self.episodes * self.steps, *grid.shape[2:])
        return flat if self.index is None else flat.index_select(0, self.index.to(grid.device))

    def put(self, rows: torch.Tensor) -> torch.Tensor:
        """[R, ...] -> [B, S, ...], zeros in the cells off the episodes."""
        shape = (self.episodes, self.steps, *rows.shape[1:])
        if self.index is None:
            return rows.reshape(shape)
        grid = rows.new_zeros(self.episodes * self.steps, *rows.shape[1:])
        return grid.index_copy(0, self.index.to(rows.device), rows).view(shape)
