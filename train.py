"""Train a multi-agent learner: `python train.py algo=qmix env=matrix/nonmonotonic seed=1`."""

from softqmix.cli_checks import run_train_cli

if __name__ == "__main__":
    run_train_cli()
