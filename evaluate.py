"""Evaluate a trained run: `python evaluate.py run=<run dir> [render=true]`."""

from softqmix.evaluate import main

if __name__ == "__main__":
    main()
