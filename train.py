"""Train a multi-agent learner: `python train.py algo=qmix env=matrix/nonmonotonic seed=1`."""

import sys

from softqmix.cli_checks import flags_first, unknown_group_choice
from softqmix.train import CONF_DIR, main

if __name__ == "__main__":
    sys.argv[1:] = flags_first(sys.argv[1:])  # `train.py algo=x -m seed=0,1` as well as `train.py -m ...`
    problem = unknown_group_choice(sys.argv[1:], CONF_DIR)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    main()
