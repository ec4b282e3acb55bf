"""Episode storage, collection and on-policy minibatches."""

from softqmix.data.buffer import EpisodeBatch, EpisodeBuffer
from softqmix.data.collector import CollectStats, EpisodeCollector

__all__ = ["CollectStats", "EpisodeBatch", "EpisodeBuffer", "EpisodeCollector"]
