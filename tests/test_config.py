"""Config mistakes stop the run at composition time with a message that names the mistake."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import OmegaConfBaseException

from softqmix.algos.registry import ALGORITHMS
from softqmix.config import TrainConfig, TrainerConfig, validate_config, value_rule
from softqmix.envs.matrix import MatrixGameEnv
from softqmix.envs.registry import ENV_FAMILIES
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
        (
            ["algo.name=qmx"],
            "unknown algorithm 'qmx'; valid algorithms: fop, hasac, iql, mappo, qmix, qplex, soft_qmix, vdn",
        ),
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


def test_collection_process_with_env_workers_is_refused_with_the_fix(compose_train) -> None:
    cfg = compose_train(["pool.collection=process", "pool.mode=workers"])
    with pytest.raises(ValueError, match=r"pool.collection=process .* use pool.mode=inprocess"):
        validate_config(cfg)
    validate_config(compose_train(["pool.collection=process", "env=smax/protoss_5v5"]))  # spawned, not forked
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


def _numeric_fields(schema: type, prefix: str) -> Iterator[str]:
    """Dotted paths of every int or float field (optional ones included) of a schema, nested schemas walked."""
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            yield from _numeric_fields(kind, f"{prefix}{f.name}.")
        elif typing.get_origin(kind) in (None, types.UnionType, typing.Union) and {int, float} & set(
            typing.get_args(kind) or (kind,)
        ):
            yield f"{prefix}{f.name}"


def _every_schema() -> list[tuple[type, str]]:
    return [
        (TrainConfig, ""),
        (TrainerConfig, "trainer."),
        *((spec.config, "algo.") for spec in ALGORITHMS),
        *((family.schema, "env.") for family in ENV_FAMILIES),
    ]


def test_every_numeric_setting_of_every_schema_has_a_range_rule() -> None:
    """validate_config checks values against softqmix.config.VALUE_RULES: a new numeric field needs its range
    there (or an explicit ANY), or it would be accepted whatever its value."""
    paths = sorted({path for schema, prefix in _every_schema() for path in _numeric_fields(schema, prefix)})
    assert {"t_max", "algo.critic_lr", "algo.actor_lr", "env.episode_limit"} <= set(paths)  # the walk sees them
    assert [path for path in paths if value_rule(path) is None] == []


LEARNING_RATES = sorted(
    {(spec.name, f.name) for spec in ALGORITHMS for f in dataclasses.fields(spec.config) if f.name.endswith("_lr")}
)


@pytest.mark.parametrize(("algo", "field"), LEARNING_RATES)
@pytest.mark.parametrize("bad", ["-1", "0"])
def test_every_learning_rate_must_be_positive(compose_train, algo: str, field: str, bad: str) -> None:
    with pytest.raises(ConfigError, match=rf"^algo\.{field}=-?[0-9.]+ is out of range: it must be > 0$"):
        validate_config(compose_train([f"algo={algo}", f"algo.{field}={bad}"]))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["algo=mappo", "algo.ppo_epochs=0"], "algo.ppo_epochs=0 is out of range: it must be >= 1"),
        (["algo=fop", "algo.alpha_finish=0"], "algo.alpha_finish=0.0 is out of range: it must be > 0"),
        (["algo.epsilon_finish=1.5"], "algo.epsilon_finish=1.5 is out of range: it must be in [0, 1]"),
        (
            ["env=mpe/spread_simple", "env.local_ratio=-0.1"],
            "env.local_ratio=-0.1 is out of range: it must be in [0, 1]",
        ),
        (["seed=-1"], "seed=-1 is out of range: it must be in [0, 2147483647]"),
        (["trainer.devices=0"], "trainer.devices=0 is out of range: it must be >= 1 or -1"),
        (["trainer.divergence_bound=0"], "trainer.divergence_bound=0.0 is out of range: it must be > 0"),
        (["t_max=0", "log_interval=-1"], "t_max=0 is out of range: it must be >= 1; log_interval=-1 is out of range"),
    ],
)
def test_out_of_range_values_name_key_and_range(compose_train, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate_config(compose_train(overrides))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_zero_where_zero_has_a_meaning_is_accepted(compose_train) -> None:
    validate_config(
        compose_train(["test_interval=0", "log_interval=0", "checkpoint.interval=0", "algo.epsilon_anneal_time=0"])
    )
    validate_config(compose_train(["trainer.devices=-1", "algo=qmix", "algo.alpha=0"]))
