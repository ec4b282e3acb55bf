"""Config mistakes stop the run at composition time with a message that names the mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import OmegaConfBaseException

from softqmix.config import validate_config
from softqmix.envs.matrix import MatrixGameEnv
from softqmix.errors import ConfigError

CONFIG_ERRORS = (ConfigCompositionException, OmegaConfBaseException)


def _message(exc: BaseException) -> str:
    parts = []
    while exc is not None:
        parts.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


def test_default_config_is_soft_qmix_on_the_paper_matrix_game(compose_train) -> None:
    cfg = compose_train()
    assert cfg.algo.name == "soft_qmix" and cfg.env.family == "matrix"
    assert [list(r) for r in cfg.env.payoff] == [[8, -12, -12], [-12, 0, 0], [-12, 0, 0]]


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["algo.lamda=0.5"], "lamda"),  # unknown key
        (["algo=soft_qmx"], "soft_qmx"),  # misspelt group option
        (["env=matrix/nonmonotonc"], "nonmonotonc"),
        (["ablation=entropi"], "entropi"),
        (["algo.gamma=high"], "gamma"),  # wrong type
        (["algo.batch_size=1.5"], "batch_size"),
        (["trainer.devices=two"], "devices"),
        (["pool.collection=procss"], "procss"),
        (["pool.overlap_learning=true"], "overlap_learning"),  # the old switch, now pool.collection
    ],
)
def test_bad_override_names_the_problem(compose_train, overrides: list[str], needle: str) -> None:
    with pytest.raises(CONFIG_ERRORS) as err:
        compose_train(overrides)
    assert needle in _message(err.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["algo.mixer=qmx"], "unknown mixer 'qmx'; valid mixers: none, qmix, qplex, sum"),
        (["algo.name=qmx"], "unknown algorithm 'qmx'; valid algorithms: fop, iql, mappo, qmix, qplex, soft_qmix, vdn"),
        (["env.family=mpee"], "unknown env family 'mpee'; valid env families: matrix, mpe, smacv2, smax"),
    ],
)
def test_unknown_registry_names_list_the_registered_ones(compose_train, overrides: list[str], message: str) -> None:
    """Names that select code (algorithm, env family, mixer) come from registries filled by the modules."""
    with pytest.raises(ConfigError) as err:
        validate_config(compose_train(overrides))
    assert message in str(err.value)


def test_an_ablation_never_relabels_another_algorithm(compose_train) -> None:
    """Ablation bundles are Soft-QMIX's variants: on algo=qmix they would run Soft-QMIX labelled qmix[full]."""
    with pytest.raises(ConfigError, match=r"ablation=full is a variant of soft_qmix, not of algo=qmix"):
        validate_config(compose_train(["algo=qmix", "ablation=full"]))
    validate_config(compose_train(["algo=soft_qmix", "ablation=full"]))


def test_key_forced_in_with_plus_is_caught_before_training(compose_train) -> None:
    cfg = compose_train(["+algo.lamda=0.5"])  # Hydra lets `+` add keys; the run must not
    with pytest.raises(ValueError, match=r"config group 'algo'.*lamda"):
        validate_config(cfg)


def test_collection_process_with_env_workers_or_smax_is_refused_with_the_fix(compose_train) -> None:
    cfg = compose_train(["pool.collection=process", "pool.mode=workers"])
    with pytest.raises(ValueError, match=r"pool.collection=process .* use pool.mode=inprocess"):
        validate_config(cfg)
    with pytest.raises(ValueError, match=r"JAX \(SMAX\) deadlocks in a forked process"):
        validate_config(compose_train(["pool.collection=process", "env=smax/protoss_5v5"]))
    validate_config(compose_train(["pool.collection=process"]))
    validate_config(compose_train(["pool.collection=thread", "pool.mode=workers"]))


def test_typo_in_a_yaml_file_names_the_key(compose_train, tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    (conf / "algo").mkdir(parents=True)
    (conf / "algo" / "mine.yaml").write_text("defaults:\n  - /schema/algo/qmix@_here_\n  - _self_\ntd_lamda: 0.8\n")
    with pytest.raises(CONFIG_ERRORS) as err:
        compose_train(["algo=mine", f"hydra.searchpath=[file://{conf}]"])
    assert "td_lamda" in _message(err.value)


def test_every_algo_and_ablation_composes(compose_train) -> None:
    for algo in ["soft_qmix", "qmix", "vdn", "iql"]:
        assert compose_train([f"algo={algo}"]).algo.name == algo
    for ablation in ["full", "qmix", "entropy", "function_f", "release", "no_abs"]:
        assert compose_train([f"ablation={ablation}"]).algo.variant == ablation


def test_payoff_from_the_command_line(compose_train) -> None:
    cfg = compose_train(["env.payoff=[[1,0],[0,2]]"])
    env = MatrixGameEnv([list(r) for r in cfg.env.payoff])
    assert env.info().n_actions == 2
    assert env.step([1, 1]).reward == 2.0


def test_non_square_payoff_is_rejected_with_the_fix() -> None:
    with pytest.raises(ValueError, match="square"):
        MatrixGameEnv([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]])
