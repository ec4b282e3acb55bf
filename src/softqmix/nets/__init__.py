"""Networks: the shared recurrent agent, mixers and the order-preserving transforms g and f."""

from softqmix.nets.agent import RNNAgent, build_agent_inputs
from softqmix.nets.mixers import NoMixer, QMixer, SumMixer, make_mixer
from softqmix.nets.transforms import AffineF, IdentityTransform, MonotoneG

__all__ = [
    "AffineF",
    "IdentityTransform",
    "MonotoneG",
    "NoMixer",
    "QMixer",
    "RNNAgent",
    "SumMixer",
    "build_agent_inputs",
    "make_mixer",
]
