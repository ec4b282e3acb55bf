"""Fault injection at scale: what was tried, what survived, what was lost, which errors were clean.

    python benchmarks/faults.py --kills 5 --out benchmarks/results/faults.json

Faults (each must survive: the last good checkpoint loads, and the run, resumed or restarted, ends with the
metrics.csv of an uninterrupted run of the same seed, row by row; data lost = rows that differ or are missing):

- SIGKILL inside a checkpoint write, at the n-th write of `last.ckpt` and of the replay buffer, with the temp
  file complete (killed before the rename) and torn (killed mid-write) (`python -m tests.fault_child kill:...`);
- a full disk at every write of a run's files (checkpoint, buffer, metrics.csv, hparams.yaml, summary.json),
  simulated in-process (ENOSPC after half a write, tests/fault_child.FullDisk): the run must also stop with one
  line naming the file and the problem;
- with `unshare` (a mount namespace): a real 16 MB tmpfs filled up mid-run, and a mount turned read-only
  mid-run, each resumed once the disk is usable again;
- N SIGKILLs at random moments of an MPE run (`checkpoint.save_buffer=true`), the same command line resuming it
  each time, as a requeued Slurm job would.

Bad inputs (each must end with one `error:` line on stderr, no traceback, a non-zero exit code, and leave the
dirs it names as they were): a read-only run dir (simulated, and a real read-only bind mount), resumes that cannot
go ahead (truncated, empty or foreign checkpoints, a config.yaml of another algorithm, edited or broken), and a
list of bad command lines.
"""

from __future__ import annotations

import argparse
import builtins
import csv
import errno
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from softqmix import CONF_DIR
from softqmix.checkpointing import checkpoint_path
from softqmix.config import register_configs
from softqmix.errors import OutputWriteError, RunDirNotWritable
from softqmix.rundir import LOCK_FILE
from softqmix.train import train

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from tests.fault_child import FullDisk, full_disk_script  # noqa: E402  (the injection the tests use)

TINY = ["experiment=debug/tiny", "logger=csv", "checkpoint.save_buffer=true", "checkpoint.interval=100"]
NO_SPACE = "no space left on the device (the disk is full)"
WRITES = ("last.ckpt", "buffer", "metrics.csv", "hparams.yaml", "summary.json")
BAD_COMMAND_LINES = [
    ["algo.batch_size=0"],
    ["algo.critic_lr=-1"],
    ["batch_size_run=0"],
    ["t_max=0"],
    ["t_max=-5"],
    ["test_nepisode=0"],
    ["algo=mappo", "ablation=entropy"],
    ["algo.lamda=0.5"],
    ["algo=soft_qmx"],
    ["env=mpe/nothing"],
    ["algo.gamma=high"],
    ["resume=/nonexistent"],
]


# ---------------------------------------------------------------- helpers


def config(overrides: list[str]) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def rows(run_dir: Path) -> list[dict[str, str]]:
    """metrics.csv without empty cells and perf/ timings (as tests/test_reliability.py compares it)."""
    if not (run_dir / "metrics.csv").exists():
        return []
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in r.items() if v != "" and not k.startswith("perf/")} for r in csv.DictReader(handle)]


def rows_lost(got: list[dict[str, str]], want: list[dict[str, str]]) -> int:
    """Rows of the uninterrupted run missing or different in `got`, plus rows `got` has beyond it."""
    return sum(a != b for a, b in zip(got, want, strict=False)) + abs(len(got) - len(want))


def temp_files(run_dir: Path) -> list[str]:
    return [str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if ".tmp" in p.name] if run_dir.exists() else []


def snapshot(run_dir: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(run_dir)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != LOCK_FILE
    }


def checkpoint_step(run_dir: Path) -> int | None:
    """The env step of the run's checkpoint, None without one; -1 when it exists but does not load."""
    if not checkpoint_path(run_dir).exists():
        return None
    try:
        return int(torch.load(checkpoint_path(run_dir), weights_only=True)["progress"]["t_env"])
    except Exception:
        return -1


def one_error_line(stderr: str) -> str | None:
    """The single `error:` line of a clean failure; None for anything else (several lines, a traceback)."""
    lines = stderr.strip().splitlines()
    if len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr:
        return lines[0]
    return None


Proc = subprocess.CompletedProcess[str]


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600) -> Proc:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def cli(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Proc:
    return run([sys.executable, str(REPO_ROOT / "train.py"), *args], cwd, env)


class SignalAt(L.Callback):
    def __init__(self, t_env: int) -> None:
        self.t_env, self.sent = t_env, False

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:  # type: ignore[no-untyped-def]
        if not self.sent and pl_module.progress.t_env >= self.t_env:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)


def finish(run_dir: Path, elsewhere: Path) -> None:
    """Go on after a fault as a user would: resume from the checkpoint, or start again without one."""
    if checkpoint_step(run_dir) is not None:
        train(config([*TINY, f"resume={run_dir}"]), elsewhere)
    else:
        train(config(TINY), run_dir)


def finish_error(run_dir: Path, elsewhere: Path) -> str | None:
    """`finish` the run; its error in one line, or None when the run could be finished."""
    try:
        finish(run_dir, elsewhere)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def category(name: str, cases: list[dict[str, Any]], command: str, fault: bool, bad_input: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "command": command}
    if fault:
        out.update(
            faults=len(cases),
            survived=sum(c["survived"] for c in cases),
            rows_lost=sum(c["rows_lost"] for c in cases),
        )
    if bad_input:
        out.update(bad_inputs=len(cases), clean_errors=sum(c["clean"] for c in cases))
    out["cases"] = cases
    print(
        f"{name}: "
        + ", ".join(f"{k}={v}" for k, v in out.items() if k not in ("name", "command", "cases"))
        + f"  ({time.strftime('%H:%M:%S')})",
        flush=True,
    )
    return out


# ---------------------------------------------------------------- faults


def kills_in_writes(work: Path, want: list[dict[str, str]], max_n: int) -> list[dict[str, Any]]:
    cases = []
    for target in ("last.ckpt", "buffer"):
        for n in range(1, max_n + 1):
            for torn in (False, True):
                run_dir = work / f"kill_{target}_{n}_{'torn' if torn else 'whole'}"
                spec = f"kill:{target}:{n}" + (":torn" if torn else "")
                proc = run([sys.executable, "-m", "tests.fault_child", spec, str(run_dir), *TINY], REPO_ROOT)
                step = checkpoint_step(run_dir)
                previous_ok = step == (100 * (n - 1) if n > 1 else None)  # the one before the killed one, or none
                inside = bool(temp_files(run_dir))  # the kill left the write's temp file behind
                error = finish_error(run_dir, work / "elsewhere")
                lost = rows_lost(rows(run_dir), want)
                killed = proc.returncode == -signal.SIGKILL
                cases.append(
                    {
                        "fault": spec,
                        "killed_inside_write": killed and inside,
                        "previous_checkpoint_loads_or_none": previous_ok,
                        "checkpoint_step": step,
                        "resume_error": error,
                        "rows_lost": lost,
                        "survived": killed and inside and previous_ok and error is None and lost == 0,
                    }
                )
    return cases


def count_writes(work: Path) -> dict[str, int]:
    counts, real = dict.fromkeys(WRITES, 0), builtins.open

    def spy(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, str | os.PathLike) and set(mode) & set("wax"):
            for needle in counts:
                counts[needle] += needle in Path(file).name
        return real(file, mode, *args, **kwargs)

    builtins.open = spy
    try:
        train(config(TINY), work / "count_writes")
    finally:
        builtins.open = real
    return counts


def full_disk_everywhere(work: Path, want: list[dict[str, str]]) -> list[dict[str, Any]]:
    cases = []
    for needle, count in count_writes(work).items():
        for n in range(1, count + 1):
            run_dir = work / f"full_{needle}_{n}"
            disk, real = FullDisk(needle, n), builtins.open
            builtins.open = disk
            try:
                train(config(TINY), run_dir)
                message, clean = "the run did not fail", False
            except OutputWriteError as exc:
                message = str(exc)
                clean = "\n" not in message and message.startswith(f"cannot write {run_dir}") and NO_SPACE in message
            except Exception as exc:
                message, clean = f"{type(exc).__name__}: {exc}", False
            finally:
                builtins.open = real
            got = rows(run_dir)
            whole = got == want[: len(got)] and not temp_files(run_dir)  # no torn row, no lost row, no temp file
            step = checkpoint_step(run_dir)
            error = finish_error(run_dir, work / "elsewhere")
            lost = rows_lost(rows(run_dir), want)
            cases.append(
                {
                    "fault": f"ENOSPC at write {n} of {needle}",
                    "message": message,
                    "clean": clean,
                    "files_whole": whole,
                    "checkpoint_step": step,
                    "resume_error": error,
                    "rows_lost": lost,
                    "survived": whole and step != -1 and error is None and lost == 0,
                }
            )
    return cases


def unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m none /mnt && mount -o remount,ro /mnt"]
    return subprocess.run(probe, capture_output=True).returncode == 0


def in_namespace(script: str, cwd: Path, **env: str) -> Proc:
    full_env = {**os.environ, "PY": sys.executable, "TRAIN": str(REPO_ROOT / "train.py"), **env}
    return run(["unshare", "-rm", "sh", "-c", script], cwd, full_env, timeout=900)


def real_full_disk(work: Path, mpe: list[str], want: list[dict[str, str]]) -> list[dict[str, Any]]:
    """A real 16 MB tmpfs, filled up (dd) once the run has written its first checkpoint; resumed after `rm`.

    (A mount turned read-only under a running process cannot be made here: the kernel refuses to remount a
    file system read-only while files on it are open for writing, EBUSY.)
    """
    mnt, out = work / "disk", work / "disk_out"
    mnt.mkdir()
    out.mkdir()
    script = full_disk_script(" ".join(mpe), "broken") + '        cp -a "$MNT/run" "$OUT/final"\n'
    proc = in_namespace(script, work, MNT=str(mnt), OUT=str(out))
    stderr = (out / "stderr").read_text() if (out / "stderr").exists() else proc.stderr
    line = one_error_line(stderr)
    rc = (out / "rc").read_text().strip() if (out / "rc").exists() else None
    clean = (
        rc == "1" and line is not None and line.startswith(f"error: cannot write {mnt / 'run'}") and NO_SPACE in line
    )
    step = checkpoint_step(out / "broken") if (out / "broken").exists() else -1
    resumed = (out / "resume_rc").exists() and (out / "resume_rc").read_text().strip() == "0"
    lost = rows_lost(rows(out / "final"), want) if (out / "final").exists() else len(want)
    return [
        {
            "fault": "a real tmpfs filled up mid-run",
            "message": line or stderr[-2000:],
            "clean": clean,
            "checkpoint_step": step,
            "resumed": resumed,
            "rows_lost": lost,
            "survived": step not in (None, -1) and resumed and lost == 0,
        }
    ]


def launch(mpe: list[str], run_dir: Path, cwd: Path) -> subprocess.Popen[str]:
    args = [sys.executable, str(REPO_ROOT / "train.py"), *mpe, f"hydra.run.dir={run_dir}"]
    return subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_new_rows(proc: subprocess.Popen[str], metrics: Path, seen: int | None) -> None:
    """Until this process has written metrics.csv (its first row, or a resume's shortened copy), or has ended."""
    while proc.poll() is None and (not metrics.exists() or metrics.stat().st_mtime_ns == seen):
        time.sleep(0.05)


def logged_step(metrics: Path) -> float:
    """The env step of the last complete row of metrics.csv (0 before there is one)."""
    try:
        lines = metrics.read_text().splitlines()
        header = lines[0].split(",")
        complete = [line.split(",") for line in lines[1:] if line.count(",") == len(header) - 1]
        return float(complete[-1][header.index("env_step")]) if complete else 0.0
    except (OSError, IndexError, ValueError):
        return 0.0


def random_kills(
    work: Path, mpe: list[str], t_max: int, want: list[dict[str, str]], kills: int, seed: int
) -> dict[str, Any]:
    """SIGKILL `kills` times at random moments, one in five while the process starts or resumes (imports, the
    checkpoint's load, the rewrite of metrics.csv), the others while it trains; the same command line resumes the
    run each time, as a requeued job would; then the run ends and is compared with the uninterrupted one."""
    rng, run_dir, metrics = random.Random(seed), work / "random_kills", work / "random_kills" / "metrics.csv"
    launched = time.perf_counter()  # how long a run takes to start and to train, from one uninterrupted run
    timing = launch(mpe, work / "timing", work)
    wait_for_new_rows(timing, work / "timing" / "metrics.csv", None)
    startup = time.perf_counter() - launched
    timing.communicate(timeout=900)
    training = time.perf_counter() - launched - startup
    landed, late, attempts, points = 0, 0, 0, []
    while True:
        attempts += 1
        seen = metrics.stat().st_mtime_ns if metrics.exists() else None
        step = checkpoint_step(run_dir) or 0
        launched = time.perf_counter()
        proc = launch(mpe, run_dir, work)
        if landed < kills:
            if rng.random() < 0.2:
                where = "starting"
                time.sleep(rng.uniform(0.0, startup))
            else:  # a random moment of what is left to train: past a random env step, then up to 1 s more
                where = "training"
                target = rng.uniform(step, 0.8 * t_max)  # the last row comes only at the end
                wait_for_new_rows(proc, metrics, seen)
                while proc.poll() is None and logged_step(metrics) < target:
                    time.sleep(0.05)
                time.sleep(rng.uniform(0.0, 1.0))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                landed += 1
                points.append(
                    {
                        "phase": where,
                        "seconds_after_launch": round(time.perf_counter() - launched, 2),
                        "resumed_from": step,
                        "checkpoint_after": checkpoint_step(run_dir),
                    }
                )
        _, err = proc.communicate(timeout=900)
        if (run_dir / "summary.json").exists():
            if proc.returncode != 0:  # the kill came after the summary: the run had ended
                landed, late = landed - 1, late + 1
                points[-1]["after_the_end"] = True
            break
        if proc.returncode != -signal.SIGKILL or attempts > 4 * kills + 4:
            return {"error": err[-2000:], "kills": landed, "survived": False, "rows_lost": len(want)}
    summary = json.loads((run_dir / "summary.json").read_text())
    lost = rows_lost(rows(run_dir), want)
    return {
        "kills": landed,
        "kills_after_the_end": late,
        "launches": attempts,
        "startup_seconds": round(startup, 1),
        "training_seconds": round(training, 1),
        "points": points,
        "resumed_from_step": summary["resumed_from_step"],
        "final_test_return": summary["final_test_return"],
        "rows_lost": lost,
        "survived": lost == 0,
    }


# ---------------------------------------------------------------- bad inputs


def read_only_run_dirs(work: Path, real: bool) -> list[dict[str, Any]]:
    """Run dirs that cannot be written: simulated (os.open refuses new files in the dir, as a read-only mount or,
    for a non-root user, missing permission does), and real in a mount namespace (a read-only bind mount, for a
    new run and for resume=; a tmpfs that is full before the run starts)."""
    cases = []
    real_open = os.open
    for code in (errno.EROFS, errno.EACCES):  # simulated: every new file in the run dir is refused
        run_dir = (work / f"ro_sim_{code}").resolve()
        run_dir.mkdir()

        def refusing(path: Any, flags: int, *args: Any, _dir: Path = run_dir, _code: int = code, **kwargs: Any) -> int:
            if Path(path).parent == _dir and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                raise OSError(_code, os.strerror(_code), str(path))
            return real_open(path, flags, *args, **kwargs)

        os.open = refusing  # type: ignore[assignment]
        try:
            train(config(TINY), run_dir)
            message = "the run did not fail"
        except RunDirNotWritable as exc:
            message = str(exc)
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
        finally:
            os.open = real_open
        clean = message.startswith(f"run dir {run_dir} is not writable ({os.strerror(code)})") and "\n" not in message
        cases.append(
            {
                "input": f"run dir refusing writes ({errno.errorcode[code]}, simulated)",
                "message": message,
                "clean": clean and not any(run_dir.iterdir()),
            }
        )
    if not real:
        return cases
    archive, full, cwd, out = work / "ro_archive", work / "ro_full", work / "ro_cwd", work / "ro_out"
    train(config(TINY), archive / "old", extra_callbacks=[SignalAt(200)])
    before = snapshot(archive / "old")
    for d in (full, cwd, out):
        d.mkdir()
    script = f"""
        mount --bind "$RO" "$RO" && mount -o remount,bind,ro "$RO" || exit 90
        mount -t tmpfs -o size=1m none "$FULL" && dd if=/dev/zero of="$FULL/filler" bs=64k 2>/dev/null
        cd "$CWD"
        "$PY" "$TRAIN" {" ".join(TINY)} hydra.run.dir="$RO/new" > /dev/null 2> "$OUT/new"; echo $? > "$OUT/new_rc"
        "$PY" "$TRAIN" resume="$RO/old" > /dev/null 2> "$OUT/resume"; echo $? > "$OUT/resume_rc"
        "$PY" "$TRAIN" {" ".join(TINY)} hydra.run.dir="$FULL/run" > /dev/null 2> "$OUT/full"; echo $? > "$OUT/full_rc"
    """
    in_namespace(script, work, RO=str(archive), FULL=str(full), CWD=str(cwd), OUT=str(out))
    for name, run_dir, what, why in (
        ("new", archive / "new", "a new run in a read-only mount", "Read-only file system"),
        ("resume", archive / "old", "resume= of a run in a read-only mount", "Read-only file system"),
        ("full", full / "run", "a new run on a full disk", "No space left on device"),
    ):
        stderr = (out / name).read_text() if (out / name).exists() else ""
        rc = (out / f"{name}_rc").read_text().strip() if (out / f"{name}_rc").exists() else None
        line = one_error_line(stderr)
        clean = rc == "2" and line is not None and line.startswith(f"error: run dir {run_dir} is not writable ({why})")
        untouched = not (archive / "new").exists() and snapshot(archive / "old") == before and not any(cwd.iterdir())
        cases.append({"input": what, "message": line or stderr[-2000:], "clean": clean and untouched})
    return cases


def bad_resumes(work: Path) -> list[dict[str, Any]]:
    stopped = work / "stopped_qmix"
    train(config([*TINY, "algo=qmix"]), stopped, extra_callbacks=[SignalAt(200)])

    def truncate(d: Path) -> None:
        os.truncate(checkpoint_path(d), checkpoint_path(d).stat().st_size // 2)

    def empty(d: Path) -> None:
        os.truncate(checkpoint_path(d), 0)

    def garbage(d: Path) -> None:
        checkpoint_path(d).write_bytes(random.Random(0).randbytes(4096))

    def other_algo_config(d: Path) -> None:
        (d / "config.yaml").write_text(OmegaConf.to_yaml(config(["algo=mappo", "logger=csv"]), resolve=True))

    def other_algo_old_checkpoint(d: Path) -> None:  # a checkpoint from before run_config was recorded
        state = torch.load(checkpoint_path(d), weights_only=True)
        del state["run_config"]
        torch.save(state, checkpoint_path(d))
        other_algo_config(d)

    def edited(d: Path) -> None:
        saved = OmegaConf.load(d / "config.yaml")
        saved.algo.critic_lr = 0.01
        (d / "config.yaml").write_text(OmegaConf.to_yaml(saved))

    def broken_yaml(d: Path) -> None:
        (d / "config.yaml").write_text((d / "config.yaml").read_text() + "algo: [unclosed\n")

    cases = []
    for name, damage, same_dir in (
        ("truncated checkpoint, resume=<dir>", truncate, False),
        ("truncated checkpoint, same run dir (requeued job)", truncate, True),
        ("empty checkpoint", empty, False),
        ("checkpoint of random bytes", garbage, False),
        ("qmix checkpoint, config.yaml of mappo", other_algo_config, False),
        ("qmix checkpoint without run_config, config.yaml of mappo", other_algo_old_checkpoint, False),
        ("config.yaml edited (algo.critic_lr)", edited, False),
        ("config.yaml that is no YAML", broken_yaml, False),
    ):
        run_dir, cwd = work / f"bad_resume_{len(cases)}", work / f"bad_resume_{len(cases)}_cwd"
        shutil.copytree(stopped, run_dir)
        cwd.mkdir()
        damage(run_dir)
        before = snapshot(run_dir)
        args = [*TINY, "algo=qmix", f"hydra.run.dir={run_dir}"] if same_dir else [f"resume={run_dir}"]
        proc = cli(args, cwd)
        line = one_error_line(proc.stderr)
        untouched = snapshot(run_dir) == before and not any(cwd.iterdir())
        clean = proc.returncode == 2 and line is not None and str(run_dir) in line and untouched
        cases.append({"input": name, "message": line or proc.stderr[-2000:], "untouched": untouched, "clean": clean})
    return cases


def bad_command_lines(work: Path) -> list[dict[str, Any]]:
    cases = []
    runs = [(args, None) for args in BAD_COMMAND_LINES]
    home = work / "home"
    home.mkdir()
    no_key = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "NETRC")}
    runs.append((["logger=wandb"], {**no_key, "HOME": str(home), "WANDB_MODE": "online"}))
    for args, env in runs:
        run_dir = work / f"bad_cli_{len(cases)}"
        extra = ["logger=csv"] if env is None else []
        proc = cli([*args, *extra, f"hydra.run.dir={run_dir}"], work, env)
        line = one_error_line(proc.stderr)
        clean = proc.returncode != 0 and line is not None and not (run_dir / "metrics.csv").exists()
        shown = " ".join(args) + (" (WANDB_MODE=online, no API key, empty HOME)" if env is not None else "")
        cases.append(
            {"input": shown, "exit_code": proc.returncode, "message": line or proc.stderr[-2000:], "clean": clean}
        )
    return cases


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=5, help="random SIGKILLs of the MPE run")
    parser.add_argument("--write-kills", type=int, default=3, help="kill at writes 1..n of last.ckpt and the buffer")
    parser.add_argument("--mpe-t-max", type=int, default=5000, help="env steps of the MPE run (debug/mpe: 2500)")
    parser.add_argument("--seed", type=int, default=0, help="of the kill moments")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/faults.json"))
    args = parser.parse_args()
    os.environ["WANDB_MODE"] = "disabled"  # the runs log to metrics.csv; the wandb case sets its own
    register_configs()
    torch.set_num_threads(1)
    mounts = unshare_works()
    mpe = [
        "experiment=debug/mpe",
        "logger=csv",
        f"t_max={args.mpe_t_max}",
        "checkpoint.interval=500",
        "checkpoint.save_buffer=true",
    ]
    command = "python benchmarks/faults.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        work = Path(tmp)
        train(config(TINY), work / "straight")
        want = rows(work / "straight")
        mpe_straight = work / "mpe_straight"
        train(config(mpe), mpe_straight)
        want_mpe = rows(mpe_straight)
        categories = [
            category(
                "kill inside a checkpoint write",
                kills_in_writes(work, want, args.write_kills),
                command,
                fault=True,
                bad_input=False,
            ),
            category(
                "full disk at every write (simulated ENOSPC)",
                full_disk_everywhere(work, want),
                command,
                fault=True,
                bad_input=True,
            ),
        ]
        if mounts:
            categories.append(
                category("real full disk (tmpfs)", real_full_disk(work, mpe, want_mpe), command, True, True)
            )
        kill_run = random_kills(work, mpe, args.mpe_t_max, want_mpe, args.kills, args.seed)
        categories.append(
            {
                "name": f"SIGKILL at random moments of an MPE run ({args.mpe_t_max} steps)",
                "command": command,
                "faults": kill_run["kills"],
                "survived": kill_run["kills"] if kill_run["survived"] else 0,
                "rows_lost": kill_run["rows_lost"],
                "run": kill_run,
            }
        )
        print(f"{categories[-1]['name']}: kills={kill_run['kills']}, rows_lost={kill_run['rows_lost']}", flush=True)
        categories += [
            category("read-only run dir", read_only_run_dirs(work, mounts), command, fault=False, bad_input=True),
            category("resume that cannot go ahead", bad_resumes(work), command, fault=False, bad_input=True),
            category("bad command line", bad_command_lines(work), command, fault=False, bad_input=True),
        ]
    totals = {
        key: sum(c.get(key, 0) for c in categories)
        for key in ("faults", "survived", "rows_lost", "bad_inputs", "clean_errors")
    }
    result = {
        "command": command,
        "real_mounts": mounts,
        "seconds": round(time.perf_counter() - started, 1),
        "totals": totals,
        "categories": categories,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({"command": command, "real_mounts": mounts, "seconds": result["seconds"], "totals": totals}))


if __name__ == "__main__":
    main()
