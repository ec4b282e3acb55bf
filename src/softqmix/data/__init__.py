"""Episode storage and the stream that feeds Lightning."""

from softqmix.data.buffer import EpisodeBatch, EpisodeBuffer
from softqmix.data.collector import CollectStats, EpisodeCollector
from softqmix.data.stream import ReplayStream, TrainingProgress

__all__ = [
    "CollectStats",
    "EpisodeBatch",
    "EpisodeBuffer",
    "EpisodeCollector",
    "ReplayStream",
    "TrainingProgress",
]
