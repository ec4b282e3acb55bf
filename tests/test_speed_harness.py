"""benchmarks/parity/jaxmarl_speed.py: warm ratios pair each run of ours with the JaxMARL run it took turns with."""

from __future__ import annotations

from tests.helpers import load_script


def harness():  # type: ignore[no-untyped-def]
    return load_script("benchmarks/parity/jaxmarl_speed.py")


def run(code: str, algo: str, repeat: int, steps_per_s: float, beside: str | None = None) -> dict:
    row = {"code": code, "algo": algo, "cache": "warm", "repeat": repeat, "env_steps_per_s": steps_per_s}
    return {**row, "exit_code": 0, **({"beside": beside} if beside else {})}


def test_warm_ratios_pair_runs_taken_in_turns_and_take_the_median() -> None:
    rows = [
        {"code": "ours", "algo": "qmix", "cache": "cold", "repeat": None, "env_steps_per_s": 1.0, "exit_code": 0},
        run("ours", "qmix", 0, 100.0),
        run("jaxmarl", "qmix", 0, 200.0, beside="qmix"),
        run("ours", "qmix", 1, 150.0),
        run("jaxmarl", "qmix", 1, 100.0, beside="qmix"),
        run("ours", "qmix", 2, 90.0),
        run("jaxmarl", "qmix", 2, 100.0, beside="qmix"),
        # Soft-QMIX takes its turns with JaxMARL's QMIX too; those runs must not pair with our QMIX's
        run("ours", "soft_qmix", 0, 50.0),
        run("jaxmarl", "qmix", 0, 400.0, beside="soft_qmix"),
    ]
    ratios = {r["ours"]: r for r in harness().warm_ratios(rows)}
    assert ratios["qmix"]["warm_ratios"] == [0.5, 1.5, 0.9] and ratios["qmix"]["median"] == 0.9
    assert ratios["soft_qmix"]["jaxmarl"] == "qmix" and ratios["soft_qmix"]["warm_ratios"] == [0.125]
