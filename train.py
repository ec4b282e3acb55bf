"""Train a multi-agent learner: `python train.py algo=qmix env=matrix/nonmonotonic seed=1`."""

from softqmix.train import main

if __name__ == "__main__":
    main()
