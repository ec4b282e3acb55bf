"""Every YAML under conf/ only overrides its schema, and every registered name has its YAML.

The schemas (dataclasses next to the code) hold every default; a YAML carries only what its
algorithm, env or backend changes, so a default lives in one place. Checked file by file: the
file's own keys must change the config that its defaults list composes to without them.
Exempt, on purpose: ablation bundles (conf/ablation/), which set every switch of their column of
the paper's table whatever the base says (tests/test_ablations.py checks them switch by switch),
and experiment recipes (conf/experiment/), which pin a paper's settings even where a default
agrees today; both still fail at composition on any key their schema lacks.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from softqmix import CONF_DIR
from softqmix.algos.registry import ALGORITHMS
from softqmix.cli_checks import group_options
from softqmix.envs.registry import ENV_FAMILIES

# (file relative to conf/, the override that selects it, the config package it fills)
CHECKED = [
    *((f"algo/{o}.yaml", f"algo={o}", "algo") for o in group_options(CONF_DIR, "algo")),
    *((f"env/{o}.yaml", f"env={o}", "env") for o in group_options(CONF_DIR, "env")),
    *((f"logger/{o}.yaml", f"logger={o}", "logger") for o in group_options(CONF_DIR, "logger")),
    *((f"trainer/{o}.yaml", f"trainer={o}", "trainer") for o in group_options(CONF_DIR, "trainer")),
    *(
        (f"smacv2/race/{race}.yaml", f"env=smacv2/{race}_5v5", "env")
        for race in (p.stem for p in sorted((CONF_DIR / "smacv2" / "race").glob("*.yaml")))
    ),
    ("train.yaml", "seed=0", ""),
]


def _composed(conf_dir: Path, override: str, package: str) -> dict:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[override])
    node = cfg[package] if package else cfg
    return OmegaConf.to_container(node, resolve=False)  # type: ignore[return-value]


def _leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out |= _leaves(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _own_keys(path: Path) -> dict[str, object]:
    body = yaml.safe_load(path.read_text()) or {}
    body = {k: v for k, v in body.items() if k not in ("defaults", "hydra")}
    return _leaves(body)


@pytest.mark.parametrize(("relative", "override", "package"), CHECKED, ids=[c[0] for c in CHECKED])
def test_yaml_sets_only_what_differs_from_what_it_composes_on(
    tmp_path: Path, relative: str, override: str, package: str
) -> None:
    own = _own_keys(CONF_DIR / relative)
    if not own:
        return  # nothing but a defaults list: trivially minimal
    stripped = tmp_path / "conf"
    shutil.copytree(CONF_DIR, stripped)
    header = yaml.safe_load((CONF_DIR / relative).read_text())
    lines = [line for line in (CONF_DIR / relative).read_text().splitlines() if line.startswith("# @package")]
    defaults = {"defaults": header["defaults"]} if "defaults" in header else {}
    (stripped / relative).write_text("\n".join([*lines, yaml.safe_dump(defaults)]) if defaults or lines else "")
    if "hydra" in header:  # keep the hydra block of train.yaml: it is not part of the run's schema
        with open(stripped / relative, "a") as handle:
            handle.write(yaml.safe_dump({"hydra": header["hydra"]}))
    with_body, without = (
        _leaves(_composed(CONF_DIR, override, package)),
        _leaves(_composed(stripped, override, package)),
    )
    restated = sorted(key for key in own if key in without and with_body[key] == without[key])
    assert not restated, f"{relative} restates what its schema/defaults already say: {restated}"


def test_every_registered_algorithm_and_env_family_has_its_configs() -> None:
    algos = set(group_options(CONF_DIR, "algo"))
    assert set(ALGORITHMS.names()) <= algos, "an algorithm without conf/algo/<name>.yaml cannot be selected"
    families = {option.split("/")[0] for option in group_options(CONF_DIR, "env")}
    assert set(ENV_FAMILIES.names()) == families
