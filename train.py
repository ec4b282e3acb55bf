"""Train a multi-agent learner: `python train.py algo=qmix env=matrix/nonmonotonic seed=1`."""

import sys

from softqmix.cli_checks import unknown_group_choice
from softqmix.train import CONF_DIR, main

if __name__ == "__main__":
    problem = unknown_group_choice(sys.argv[1:], CONF_DIR)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    main()
