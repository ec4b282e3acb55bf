"""What every run leaves in its directory: resolved config, loggers, summary.json."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import netrc
import os
import platform
import subprocess
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from omegaconf import DictConfig, OmegaConf

from softqmix.checkpointing import atomic_write_bytes
from softqmix.config import LoggerKind, WandbMode
from softqmix.errors import ConfigError, OutputWriteError

TRACKED_PACKAGES = (
    "softqmix",
    "torch",
    "lightning",
    "hydra-core",
    "omegaconf",
    "numpy",
    "pettingzoo",
    "mpe2",
    "wandb",
)


def _csv_bytes(header: list[str], rows: list[dict[str, Any]]) -> bytes:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=header)
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode()


class _SafeWriter(ExperimentWriter):
    """Lightning's CSV writer, safe on a full disk: no row written before is ever lost.

    Lightning rewrites metrics.csv in place when a new column appears (truncate, then write): a failed
    rewrite lost every row. Here the rewrite goes through a temp file and a rename, and a failed append is cut
    back to the rows before it, so no torn row is left. Either failure raises OutputWriteError naming the file.
    """

    def save(self) -> None:
        path = Path(self.metrics_file_path)
        self._size = path.stat().st_size if path.exists() else 0
        try:
            super().save()
        except OSError as exc:
            # the rows that did not fit are after the last checkpoint: a resume logs them again
            self.metrics = []
            with contextlib.suppress(OSError):
                os.truncate(path, self._size)
            raise OutputWriteError.writing(path, exc) from exc

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        path = Path(self.metrics_file_path)
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        atomic_write_bytes(path, _csv_bytes(fieldnames, rows))
        self._size = path.stat().st_size


class _ContinuingWriter(_SafeWriter):
    """The CSV writer, except that an existing metrics.csv is continued, not deleted.

    Rows logged after `keep_until_step` (written after the checkpoint being resumed) are
    dropped, so a resumed run's file reads as if the run had never stopped. The shortened file replaces
    the old one in one rename: a process killed while resuming leaves the old file whole.
    """

    def __init__(self, log_dir: str, keep_until_step: int) -> None:
        path = Path(log_dir) / self.NAME_METRICS_FILE
        header: list[str] = []
        rows: list[dict[str, str]] = []
        if path.exists():
            with open(path, newline="") as handle:
                reader = csv.DictReader(handle)
                header = list(reader.fieldnames or [])
                rows = [r for r in reader if r.get("step") and int(float(r["step"])) <= keep_until_step]
        super().__init__(log_dir)
        if header:
            self.metrics_keys = header
            atomic_write_bytes(path, _csv_bytes(header, rows))
        else:
            path.unlink(missing_ok=True)

    def _check_log_dir_exists(self) -> None:
        """Lightning deletes an existing metrics.csv here; this writer continues it."""


class ContinuingCSVLogger(CSVLogger):
    """CSVLogger writing `<save_dir>/metrics.csv`, continued across resumes."""

    def __init__(self, save_dir: Path, keep_until_step: int | None) -> None:
        super().__init__(save_dir=str(save_dir), name="", version="")
        self._keep_until_step = keep_until_step

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Write every row through to disk: rows come once per log or test interval, and a crash or
        a user watching the file should see them (the stock logger flushes on step % 100 == 99,
        which env-step x-axes rarely hit)."""
        super().log_metrics(metrics, step)
        self.save()

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            if self._keep_until_step is None:
                self._experiment = _SafeWriter(log_dir=self.log_dir)
            else:
                self._experiment = _ContinuingWriter(self.log_dir, self._keep_until_step)
        return self._experiment


WANDB_ID_FILE = "wandb_run_id.txt"
WANDB_DEFAULT_HOST = "https://api.wandb.ai"


def wandb_api_key_configured() -> bool:
    """True when `wandb login` (a .netrc entry for the wandb host) or WANDB_API_KEY provides a key."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", WANDB_DEFAULT_HOST)).hostname
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return netrc.netrc(path).authenticators(host or "") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_wandb_mode(mode: WandbMode | str) -> str:
    """`auto`: WANDB_MODE when set (the tests set `disabled`), else online with a key, else offline.

    Offline by default means a fresh clone trains without an account or a network, and nothing is
    lost: `wandb sync` uploads the run later.
    """
    mode = WandbMode(mode)
    if mode is not WandbMode.auto:
        return mode.value
    from_env = os.environ.get("WANDB_MODE", "").strip()
    if from_env:
        try:
            return WandbMode(from_env).value
        except ValueError:
            valid = ", ".join(m.value for m in WandbMode if m is not WandbMode.auto)
            raise ConfigError(
                f"WANDB_MODE={from_env} is not a wandb mode we run with; use one of {valid}, or unset it"
            ) from None
    return WandbMode.online.value if wandb_api_key_configured() else WandbMode.offline.value


def check_logger_ready(logger: DictConfig) -> None:
    """Before any env starts: the logger can log as configured, or a ConfigError that says how to make it.

    `WANDB_MODE=` (set but empty) counts as unset, here and for wandb itself (which rejects the empty mode
    with a validation traceback when the run starts). Online wandb without an API key would stop at the
    first log call, after the envs started; it stops here with the two ways out.
    """
    if "WANDB_MODE" in os.environ and not os.environ["WANDB_MODE"].strip():
        del os.environ["WANDB_MODE"]
    if LoggerKind(logger.kind) is not LoggerKind.wandb:
        return
    if resolve_wandb_mode(logger.mode) == WandbMode.online.value and not wandb_api_key_configured():
        source = "logger.mode=online" if WandbMode(logger.mode) is WandbMode.online else "WANDB_MODE=online"
        raise ConfigError(
            f"wandb is set to log online ({source}) but no API key is configured: log in with `wandb login` "
            "(or set WANDB_API_KEY), or log offline with logger.mode=offline (or WANDB_MODE=offline)"
        )


def run_tags(cfg: DictConfig) -> list[str]:
    """Tags that let a dashboard filter a sweep by its axes, then the user's own."""
    axes = [
        f"algo={cfg.algo.name}",
        f"ablation={cfg.algo.variant}",
        f"env={cfg.env.family}/{cfg.env.name}",
        f"seed={cfg.seed}",
    ]
    return axes + [str(tag) for tag in cfg.logger.tags]


def build_loggers(cfg: DictConfig, run_dir: Path, resume_step: int | None = None) -> list[Logger]:
    """CSV (metrics.csv in the run dir) always, plus the backend named by logger.kind.

    On resume, metrics.csv is continued and wandb continues the same run id.
    """
    loggers: list[Logger] = [ContinuingCSVLogger(run_dir, resume_step)]
    kind = LoggerKind(cfg.logger.kind)
    if kind is LoggerKind.wandb:
        id_file = run_dir / WANDB_ID_FILE
        run_dir.mkdir(parents=True, exist_ok=True)
        if not id_file.exists():
            id_file.write_text(uuid.uuid4().hex[:12])
        loggers.append(
            WandbLogger(
                id=id_file.read_text().strip(),
                resume="allow",
                project=cfg.logger.project,
                entity=cfg.logger.entity,
                group=cfg.logger.group,
                tags=run_tags(cfg),
                mode=resolve_wandb_mode(cfg.logger.mode),
                save_dir=str(run_dir),
                config=OmegaConf.to_container(cfg, resolve=True),
            )
        )
    elif kind is LoggerKind.tensorboard:
        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=""))
    return loggers


def finish_loggers(loggers: list[Logger], failed: bool) -> None:
    """End this run's wandb run. Lightning leaves it open, and the next run of a sweep in the same
    process would then log into it ("a wandb run already in progress ... will reuse this run")."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish(exit_code=1 if failed else 0)


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(path: Path) -> dict[str, Any]:
    """The commit of the code that ran, and whether the tree had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=path,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return {"commit": head, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomically (temp file, rename); OutputWriteError naming the file when the disk is full."""
    atomic_write_bytes(path, json.dumps(payload, indent=2, sort_keys=False).encode())
