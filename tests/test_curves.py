"""Learning curves read exactly the test rows of metrics.csv."""

from __future__ import annotations

from pathlib import Path

from softqmix.eval.curves import plot_runs
from softqmix.results.runs import read_test_curve


def test_curve_reads_only_rows_with_the_column_and_plots(tmp_path: Path) -> None:
    (tmp_path / "metrics.csv").write_text(
        "env_step,loss/td,step,test/return_mean\n0.0,,0,-300.5\n100.0,0.5,100,\n200.0,,200,-250.0\n"
    )
    assert read_test_curve(tmp_path) == ([0.0, 200.0], [-300.5, -250.0])
    plot_runs({"run": tmp_path}, tmp_path / "fig.png", "title")
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
