"""Evaluate a trained run: `python evaluate.py run=<run dir> [render=true]`."""

from softqmix.cli_checks import run_evaluate_cli

if __name__ == "__main__":
    run_evaluate_cli()
