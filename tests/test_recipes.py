"""Every experiment recipe composes, validates, and so does every run its sweep would launch."""

from __future__ import annotations

import itertools

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

from softqmix import CONF_DIR
from softqmix.algos.registry import algorithm
from softqmix.cli_checks import group_options
from softqmix.config import validate_config
from softqmix.train import train
from tests.fakes import smacv2 as fake_smacv2

RECIPES = group_options(CONF_DIR, "experiment")
# Paper grids: (runs, keys swept). The paper's §5.2-§5.4 (docs/algorithms/soft_qmix.md).
GRIDS = {
    "paper_mpe": (3 * 7 * 5, {"env", "algo", "seed"}),
    "paper_smacv2": (6 * 5 * 5, {"env", "algo", "seed"}),
    "paper_ablation": (3 * 4 * 3, {"env", "ablation", "seed"}),
    "smax_cpu": (3 * 3, {"algo", "seed"}),
}


def sweep_overrides(recipe: str) -> list[list[str]]:
    """The override lists of every job `python train.py -m experiment=<recipe>` would launch."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={recipe}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params or {}
    parser = OverridesParser.create()
    axes = []
    for key, values in params.items():
        (override,) = parser.parse_overrides([f"{key}={values}"])
        axes.append([f"{key}={value}" for value in override.sweep_string_iterator()])
    return [list(job) for job in itertools.product(*axes)]


def test_the_recipes_are_the_ones_the_docs_name() -> None:
    assert {"paper_matrix", "paper_mpe", "paper_smacv2", "paper_ablation", "debug/tiny", "debug/mpe"} <= set(RECIPES)


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_job_of_the_recipe_composes_and_validates(compose_train, recipe: str) -> None:
    jobs = sweep_overrides(recipe)
    for job in jobs:
        cfg = compose_train([f"experiment={recipe}", *job])
        validate_config(cfg)
    if recipe in GRIDS:
        runs, keys = GRIDS[recipe]
        assert len(jobs) == runs
        assert {item.split("=")[0] for item in jobs[0]} == keys


def test_every_per_algorithm_recipe_file_names_a_recipe_and_an_algorithm() -> None:
    """conf/recipe_algo/<recipe>/<algo>.yaml is picked by name (an optional default): a misspelt file would be
    skipped without a word, so each must match an existing recipe and algo option."""
    algos = set(group_options(CONF_DIR, "algo"))
    files = sorted((CONF_DIR / "recipe_algo").rglob("*.yaml"))
    assert files
    for path in files:
        recipe, algo = str(path.parent.relative_to(CONF_DIR / "recipe_algo")), path.stem
        assert recipe in RECIPES and algo in algos, path


def test_smax_cpu_gives_the_value_learners_small_batches_and_leaves_mappo_alone(compose_train) -> None:
    batches = {}
    for algo in ("qmix", "soft_qmix", "mappo"):
        cfg = compose_train(["experiment=smax_cpu", f"algo={algo}"])
        validate_config(cfg)
        assert (cfg.env.family, cfg.env.name, cfg.t_max) == ("smax", "protoss_5v5", 500_000)
        batches[algo] = cfg.algo.get("batch_size")
    assert batches == {"qmix": 32, "soft_qmix": 32, "mappo": None}
    assert compose_train(["algo=qmix"]).algo.batch_size == 128  # the recipe's files apply to the recipe only
    assert compose_train(["experiment=smax_cpu", "algo=qmix", "algo.batch_size=64"]).algo.batch_size == 64


def test_paper_mpe_runs_each_method_once_with_the_mpe_settings(compose_train) -> None:
    methods = set()
    for job in sweep_overrides("paper_mpe"):
        algo = compose_train(["experiment=paper_mpe", *job]).algo
        if algo.name in ("mappo", "fop", "hasac"):
            methods.add((algo.name, None, None))
        else:
            methods.add((algo.name, algo.alpha if algo.name == "soft_qmix" else None, algo.batch_size))
    vf = {("qmix", None), ("soft_qmix", 0.005), ("soft_qmix", 0.01), ("soft_qmix", 0.03)}
    others = {("mappo", None, None), ("fop", None, None), ("hasac", None, None)}
    assert methods == {(name, alpha, 800) for name, alpha in vf} | others


def test_hasac_takes_harls_run_settings_in_the_paper_recipes_and_only_there(compose_train) -> None:
    """conf/recipe_algo/<recipe>/hasac.yaml is global: HARL's 8 envs and bootstrapped time limits for HASAC's
    jobs, the authors' terminal time limit and 4 envs for the other methods of the same recipe."""
    for recipe, buffer in (("paper_mpe", 40_000), ("paper_smacv2", 5000)):
        cfg = compose_train([f"experiment={recipe}", "algo=hasac"])
        validate_config(cfg)
        assert (cfg.batch_size_run, cfg.env.time_limit_is_termination, cfg.algo.buffer_size) == (8, False, buffer)
        other = compose_train([f"experiment={recipe}", "algo=qmix"])
        assert (other.batch_size_run, other.env.time_limit_is_termination) == (4, True)
    plain = compose_train(["algo=hasac", "env=mpe/spread_simple"])
    assert (plain.batch_size_run, plain.env.time_limit_is_termination, plain.algo.value_norm) == (4, True, True)


def covering_jobs(recipe: str) -> list[list[str]]:
    """Jobs of the recipe's sweep such that every value of every axis runs at least once (job k takes value
    k of each axis, wrapping around): 7 of paper_mpe's 105 runs, every map and every method among them."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={recipe}"], return_hydra_config=True)
    parser = OverridesParser.create()
    axes = []
    for key, values in (cfg.hydra.sweeper.params or {}).items():
        (override,) = parser.parse_overrides([f"{key}={values}"])
        axes.append([f"{key}={value}" for value in override.sweep_string_iterator()])
    if not axes:
        return [[]]
    return [[axis[k % len(axis)] for axis in axes] for k in range(max(len(axis) for axis in axes))]


# Per env family: env steps of the tiny run (a few collection rounds).
TINY_STEPS = {"matrix": 40, "mpe": 200, "smacv2": 400, "smax": 400}


def tiny_budget(compose_train, recipe: str, job: list[str]) -> list[str]:
    """Overrides that shrink a recipe's job to seconds without changing what code it runs."""
    cfg = compose_train([f"experiment={recipe}", *job])
    steps = TINY_STEPS[cfg.env.family]
    spec = algorithm(cfg.algo.name)
    sizes = (
        ["algo.rollout_episodes=4", "algo.ppo_epochs=1"]
        if spec.on_policy
        else ["algo.batch_size=2", "algo.buffer_size=16", "algo.burn_in_episodes=0"]
    )
    if "warmup_steps" in cfg.algo:  # a warm-up of random actions before any update (HASAC): none
        sizes.append("algo.warmup_steps=0")
    return [f"t_max={steps}", f"test_interval={steps}", "test_nepisode=2", "checkpoint.interval=0", *sizes]


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_runs_end_to_end_at_a_tiny_budget(compose_train, tmp_path, monkeypatch, recipe: str) -> None:
    """Composing is not enough: each recipe's jobs (a covering set of its sweep) train, test and checkpoint,
    with the recipe's own settings (env workers included) except the budget; SMACv2 through the fake."""
    fake_smacv2.install(monkeypatch)
    for k, job in enumerate(covering_jobs(recipe)):
        overrides = [
            f"experiment={recipe}",
            *job,
            *tiny_budget(compose_train, recipe, job),
            "logger=csv",
            "trainer.enable_progress_bar=false",
            "print_report=false",
        ]
        summary = train(compose_train(overrides), tmp_path / f"job{k}")
        assert summary["status"] == "completed" and summary["updates"] > 0, (recipe, job)
        assert summary["env_steps"] >= TINY_STEPS[summary["env"].split("/")[0]] and len(summary["tests"]) >= 2
