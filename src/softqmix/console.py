"""What `python train.py` prints: our progress bar, where the run lives and our report; nothing from third parties.

The libraries a run uses talk on the console: Lightning ("GPU available: ...", "TPU available: ...", "💡 Tip: ...
litlogger", "`Trainer.fit` stopped: ..."), wandb (its banner and, at the end, the run history and summary),
jaxmarl ("Importing submoduled environments..." on import), Python warnings. While a `RunConsole` is active with
`quiet=True` (the CLI, unless `debug=true`) all of that goes to the run's log file instead (`<run dir>/train.log`,
the file Hydra's job logging writes), and the console keeps:

- our own lines: the progress bar (stderr), "run dir: ...", the wandb run's place, the final report (stdout);
- log records of softqmix's own loggers, and ERROR records of anyone's;
- what `main` prints when a run fails (one line).

Everything is restored when the console closes, so the next job of a sweep (same process) starts clean and Hydra's
own launcher lines between jobs still show.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # Hydra's job-log format
OUR_LOGGERS = ("softqmix", "__main__")
# Loggers that get a console handler of their own on import (Lightning's also stop propagating when imported
# before logging is configured, as `python train.py` does); the quiet console sends them to the root's handlers.
# Other libraries' loggers propagate to the root, whose console handler passes only our records.
OWN_CONSOLE_LOGGERS = (
    "lightning",
    "lightning.pytorch",
    "lightning.fabric",
    "pytorch_lightning",
    "lightning_fabric",
    "torchmetrics",
)
WANDB_TERMINAL_LOGGER = "wandb_terminal"  # wandb's terminal messages, not its "wandb" logger (which does not propagate)
PRINTS_LOGGER = "third_party"  # prints of third-party code run inside `third_party_output()`

_active: RunConsole | None = None


class _OursOnly(logging.Filter):
    """On a console handler: softqmix's records, and anyone's errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        ours = any(record.name == name or record.name.startswith(f"{name}.") for name in OUR_LOGGERS)
        return ours or record.levelno >= logging.ERROR


class _LinesToLog(io.TextIOBase):
    """A text stream that logs each complete line (stdout / stderr of third-party code)."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger, self.pending = logger, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.strip():
                self.logger.info(line.rstrip())
        return len(text)

    def flush(self) -> None:
        if self.pending.strip():
            self.logger.info(self.pending.rstrip())
        self.pending = ""


def _is_console(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)


class RunConsole:
    """The console of one run (see the module docstring); use through `run_console`."""

    def __init__(self, log_file: Path, quiet: bool) -> None:
        self.log_file, self.quiet = Path(log_file).resolve(), quiet
        self._undo = contextlib.ExitStack()
        self._log_files: set[Path] = set()
        self.latest_log_file: Path | None = None  # where the run's log goes now (a resume moves it), when quiet
        self._wandb_routed = False

    # ------------------------------------------------------------------ set up and restore
    def __enter__(self) -> RunConsole:
        if self.quiet:
            self._route_logging()
            self.log_to(self.log_file.parent)
        return self

    def __exit__(self, *exc: object) -> None:
        self._undo.close()

    def _route_logging(self) -> None:
        root = logging.getLogger()
        self._log_files = {Path(h.baseFilename).resolve() for h in root.handlers if isinstance(h, logging.FileHandler)}
        console_filter = _OursOnly()
        for handler in [h for h in root.handlers if _is_console(h)]:
            handler.addFilter(console_filter)
            self._undo.callback(handler.removeFilter, console_filter)
        self.route_own_console_loggers()
        logging.captureWarnings(True)  # warnings.warn -> the "py.warnings" logger -> the log file
        self._undo.callback(logging.captureWarnings, False)

    def route_own_console_loggers(self) -> None:
        """Send the loggers of OWN_CONSOLE_LOGGERS to the root's handlers instead of their own console handlers.
        Run on entering, and again once a library that adds such a handler on import has been imported inside the
        console (train.py imports Lightning after it starts a spawned collection process); each change is undone
        when the console closes."""
        if not self.quiet:
            return
        for name in OWN_CONSOLE_LOGGERS:
            logger = logging.getLogger(name)
            for handler in [h for h in logger.handlers if _is_console(h)]:
                logger.removeHandler(handler)
                self._undo.callback(logger.addHandler, handler)
            if not logger.propagate:
                self._undo.callback(setattr, logger, "propagate", False)
                logger.propagate = True  # to the root's handlers: the log file, and the filtered console

    def log_to(self, run_dir: Path) -> None:
        """Also write the log into `<run_dir>/train.log` (a resume continues another dir than Hydra's)."""
        if not self.quiet:
            return
        path = (Path(run_dir) / self.log_file.name).resolve()
        self.latest_log_file = path
        if path in self._log_files:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, delay=True)  # no file until something is logged
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root = logging.getLogger()
        root.addHandler(handler)
        if root.level > logging.INFO:  # Hydra sets INFO; without Hydra's logging the root is at WARNING
            self._undo.callback(root.setLevel, root.level)
            root.setLevel(logging.INFO)
        self._log_files.add(path)
        self._undo.callback(handler.close)
        self._undo.callback(root.removeHandler, handler)

    def route_wandb(self) -> None:
        """Before wandb.init: wandb's terminal messages (banner, run history and summary, sync hint) go to the
        log file. wandb sends them to a fallback logger in its silent mode; `wandb.termsetup` sets both, and runs
        inside wandb's one-time setup, so the setup comes first."""
        if not self.quiet or self._wandb_routed:
            return
        import wandb

        try:
            wandb.setup()
            wandb.termsetup(
                SimpleNamespace(silent=True, show_info=True, show_warnings=True, show_errors=True),  # type: ignore[arg-type]
                logging.getLogger(WANDB_TERMINAL_LOGGER),
            )
        except (AttributeError, TypeError):  # another wandb: its messages stay on the console
            return
        self._wandb_routed = True
        self._undo.callback(lambda: wandb.termsetup(wandb.setup().settings, None))

    # ------------------------------------------------------------------ our lines
    def say(self, line: str) -> None:
        print(line, flush=True)


@contextlib.contextmanager
def run_console(log_file: Path, quiet: bool = True) -> Iterator[RunConsole]:
    """Make this run's console the one described in the module docstring until the block ends."""
    global _active
    previous = _active
    with RunConsole(log_file, quiet) as console:
        _active = console
        try:
            yield console
        finally:
            _active = previous


def active_console() -> RunConsole | None:
    """The console `main` opened for this run; None for runs started from code (tests, notebooks)."""
    return _active


@contextlib.contextmanager
def third_party_output() -> Iterator[None]:
    """Inside a quiet console: what third-party code prints here goes to the log file (e.g. jaxmarl's import
    lines). Elsewhere: nothing changes.

    Captured at the file descriptors, not only through `sys.stdout`: importing jaxmarl imports modules that put
    `sys.stdout` back to the terminal's stream before jaxmarl prints, which a `redirect_stdout` does not survive.
    """
    if _active is None or not _active.quiet:
        yield
        return
    logger = logging.getLogger(PRINTS_LOGGER)
    stream = _LinesToLog(logger)
    for handle in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            handle.flush()
    with tempfile.TemporaryFile(mode="w+b") as captured:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(captured.fileno(), 1)
            os.dup2(captured.fileno(), 2)
            with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
                try:
                    yield
                finally:
                    stream.flush()
                    for handle in (sys.__stdout__, sys.__stderr__):
                        with contextlib.suppress(Exception):
                            handle.flush()
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines():
                if line.strip():
                    logger.info(line.rstrip())


def describe_wandb_run(experiment: Any) -> str | None:
    """Where a wandb run lives, in one line: its URL when online, its local dir and the sync command when
    offline; None when disabled."""
    settings = getattr(experiment, "settings", None)
    if settings is None or getattr(settings, "_noop", False) or getattr(experiment, "disabled", False):
        return None
    if getattr(settings, "_offline", False) or getattr(settings, "mode", "") in ("offline", "dryrun"):
        sync_dir = getattr(settings, "sync_dir", None) or getattr(experiment, "dir", "")
        return f"wandb run (offline): {sync_dir}; upload it with `wandb sync {sync_dir}`"
    url = getattr(experiment, "url", None)
    return f"wandb run: {url}" if url else None


def say(line: str) -> None:
    """Print one of our lines when `main` opened a console (the CLI); runs started from code stay silent."""
    if _active is not None:
        _active.say(line)
