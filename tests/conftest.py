"""Shared helpers: compose configs exactly as `python train.py` does."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from softqmix import CONF_DIR
from softqmix.config import register_configs

register_configs()


@pytest.fixture
def compose_train() -> Callable[..., DictConfig]:
    """compose_train(overrides) -> the config `python train.py <overrides>` would run."""

    def _compose(overrides: list[str] | None = None, config_dir: Path = CONF_DIR) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            return compose(config_name="train", overrides=overrides or [], return_hydra_config=False)

    return _compose


# Tests never talk to wandb: the default logger's `mode=auto` honours WANDB_MODE, and
# subprocesses started by the tests inherit it.
os.environ["WANDB_MODE"] = "disabled"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the SMAX (JAX) tests last: JAX starts threads, and several tests fork worker or
    collection processes, which is only safe before those threads exist."""
    uses_jax = [item for item in items if "smax" in item.nodeid]
    items[:] = [item for item in items if "smax" not in item.nodeid] + uses_jax
