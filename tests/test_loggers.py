"""wandb is the default logger: offline without an API key, online with one, off in the tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from softqmix.outputs import build_loggers, resolve_wandb_mode, run_tags


@pytest.fixture
def no_wandb_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A user with no key in the environment, no WANDB_MODE and an empty .netrc."""
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    netrc_file = tmp_path / ".netrc"
    netrc_file.write_text("")
    monkeypatch.setenv("NETRC", str(netrc_file))
    return netrc_file


def test_auto_mode_is_offline_without_a_key_and_online_after_wandb_login(no_wandb_credentials: Path) -> None:
    assert resolve_wandb_mode("auto") == "offline"
    no_wandb_credentials.write_text(
        "machine api.wandb.ai\n  login user\n  password abc123\n"
    )  # what `wandb login` writes
    assert resolve_wandb_mode("auto") == "online"


def test_auto_mode_follows_wandb_api_key_and_wandb_mode(no_wandb_credentials: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "abc123")
    assert resolve_wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_wandb_mode("auto") == "disabled"
    assert resolve_wandb_mode("offline") == "offline"  # an explicit choice wins over the environment


def test_a_self_hosted_wandb_needs_its_own_host_in_netrc(no_wandb_credentials: Path, monkeypatch) -> None:
    no_wandb_credentials.write_text("machine api.wandb.ai\n  login user\n  password abc123\n")
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.mylab.org")
    assert resolve_wandb_mode("auto") == "offline"


def test_default_logger_is_wandb_with_sweep_axes_as_tags(compose_train, tmp_path: Path) -> None:
    cfg = compose_train(["algo=soft_qmix", "ablation=full", "seed=3", "logger.tags=[paper]"])
    assert cfg.logger.kind == "wandb" and cfg.logger.mode == "auto"
    assert run_tags(cfg) == ["algo=soft_qmix", "ablation=full", "env=matrix/nonmonotonic", "seed=3", "paper"]
    csv_logger, wandb_logger = build_loggers(cfg, tmp_path)  # WANDB_MODE=disabled in the tests (conftest)
    assert type(wandb_logger).__name__ == "WandbLogger"
    assert (tmp_path / "metrics.csv").parent == Path(csv_logger.log_dir)


def test_a_misspelt_wandb_mode_is_refused_by_name(compose_train) -> None:
    with pytest.raises(ConfigCompositionException) as error:
        compose_train(["logger.mode=ofline"])
    assert "logger.mode" in str(error.value.__cause__) and "ofline" in str(error.value.__cause__)


def test_each_run_finishes_its_wandb_run(compose_train, tmp_path: Path) -> None:
    """A sweep runs its jobs in one process; an unfinished wandb run would swallow the next job's metrics."""
    import wandb

    from softqmix.train import train

    overrides = ["t_max=40", "test_interval=40", "trainer.enable_progress_bar=false", "print_report=false"]
    train(compose_train(overrides), tmp_path / "a")  # default logger: wandb (disabled in the tests)
    assert wandb.run is None
