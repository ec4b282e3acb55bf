"""Sweeps on a real one-node Slurm cluster: an array job, a requeue by `scontrol`, a time limit reached with
`signal_delay_s`, a failing run, and where each job's log is.

`pytest -m slurm`, as root. The session fixture runs tests/cluster/start_slurm.sh (which installs slurm-wlm and munge
if they are missing) and stops the cluster afterwards if it was not running before. Jobs run as root on this node
with the test's own Python (submitit puts `sys.executable` into the job script), so they see this environment.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO_ROOT

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

CLUSTER_DIR = Path(__file__).resolve().parent
CANNOT_INSTALL = 3  # start_slurm.sh's exit code when apt cannot install slurm-wlm and munge
JOBCOMP_LOG = Path("/var/log/slurm/jobcomp.log")  # JobCompLoc in start_slurm.sh's slurm.conf
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
# One CPU per job, so the 2-CPU test machine runs two at once; memory is booked, not enforced (no cgroups).
LAUNCHER = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2"]
TINY = ["experiment=debug/tiny"]
# the matrix game, with the replay buffer in the checkpoint: an interrupted run resumes exactly (docs/reliability.md)
EXACT = [*TINY, "seed=0", "checkpoint.save_buffer=true"]
RUN = "0_soft_qmix-default_nonmonotonic_s0"  # the run dir of EXACT's single job
REQUEUE_T_MAX = 8000  # 15 to 30 s of training here, with or without load: long enough to requeue it mid-run
TIME_LIMIT_TRAINING_S = 100  # well beyond the 60 s the time-limit signal may take to come (time_limited_sweep)


def slurm_is_up() -> bool:
    """Whether a slurmctld answers here already (then the session leaves the cluster running at its end)."""
    if shutil.which("scontrol") is None:
        return False
    return "is UP" in subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=60).stdout


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[None]:
    """The one-node cluster of start_slurm.sh; stopped at the end only if this session started it."""
    if os.geteuid() != 0:
        pytest.skip("the Slurm tests install and start a one-node cluster (munged, slurmctld, slurmd): run as root")
    was_up = slurm_is_up()
    proc = subprocess.run(["bash", str(CLUSTER_DIR / "start_slurm.sh")], capture_output=True, text=True, timeout=900)
    if proc.returncode == CANNOT_INSTALL:
        pytest.skip(f"Slurm cannot be installed on this machine: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield
    if not was_up:
        subprocess.run(["bash", str(CLUSTER_DIR / "stop_slurm.sh")], capture_output=True, timeout=120, check=True)


class Sweep:
    """`python train.py -m ... hydra/launcher=slurm` in the background: its launcher waits for every job."""

    def __init__(self, sweep_dir: Path, overrides: list[str]) -> None:
        self.dir = sweep_dir
        self.log = sweep_dir.parent / f"{sweep_dir.name}.launcher.log"  # the launcher's stderr (stdout: Hydra's lines)
        sweep_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "train.py", "-m", *overrides, f"hydra.sweep.dir={sweep_dir}", *LAUNCHER],
                cwd=REPO_ROOT,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    @property
    def stderr(self) -> str:
        return self.log.read_text()

    def jobs(self) -> list[str]:
        """Slurm ids of the sweep's jobs (`N` for one job, `N_i` for the tasks of an array), from submitit's dirs."""
        return sorted(p.parent.name for p in (self.dir / ".submitit").glob("*/*_submitted.pkl"))

    def job(self, timeout: float = 120) -> str:
        """The id of a one-job sweep, once submitted."""
        deadline = time.monotonic() + timeout
        while not self.jobs():
            assert self.proc.poll() is None and time.monotonic() < deadline, f"no job submitted: {self.stderr}"
            time.sleep(0.2)
        (job,) = self.jobs()
        return job

    def wait(self, timeout: float = 300, every: Callable[[], None] | None = None) -> int:
        """The launcher's exit code, calling `every` (if given) every 0.2 s until then.

        Without sacct, submitit sees a job end only by its result file, so a job that died without one (killed by a
        signal) would keep the launcher waiting for ever: that fails here, 2 minutes after Slurm says all jobs ended
        (the launcher needs a second or two to see a result; more only on a machine too busy to give it the CPU).
        """
        deadline, ended_since, polls = time.monotonic() + timeout, None, 0
        while self.proc.poll() is None:
            if every is not None:
                every()
            polls += 1
            if polls % 10 == 0:  # every 2 s
                states = {job: job_record(job).get("JobState", "gone") for job in self.jobs()}
                ended = bool(states) and all(state in ENDED for state in states.values())
                ended_since = (ended_since or time.monotonic()) if ended else None
                if ended_since is not None and time.monotonic() - ended_since > 120:
                    self.stop()
                    tails = {job: log_paths(self.dir, job)[1].read_text()[-1500:] for job in states}
                    raise AssertionError(f"jobs ended ({states}) but the launcher waits on: {tails}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"the sweep in {self.dir} still runs after {timeout} s")
            time.sleep(0.2)
        return self.proc.returncode

    def stop(self) -> None:
        """Leaves no launcher or job behind (after a failed assertion); a sweep that ended has none left."""
        if self.proc.poll() is not None:
            return
        self.proc.kill()
        self.proc.wait()
        if self.jobs():
            subprocess.run(["scancel", *{job.split("_")[0] for job in self.jobs()}], capture_output=True)


@pytest.fixture
def sweeps() -> Iterator[list[Sweep]]:
    """Sweeps started by a test are stopped and their jobs cancelled whatever the test's outcome."""
    started: list[Sweep] = []
    yield started
    for sweep in started:
        sweep.stop()


class LocalRun:
    """An uninterrupted `python train.py` run in the background, as the reference a requeued job must equal."""

    def __init__(self, run_dir: Path, overrides: list[str]) -> None:
        self.dir = run_dir
        args = [sys.executable, "train.py", *overrides, f"hydra.run.dir={run_dir}"]
        self.proc = subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def summary(self) -> dict[str, Any]:
        _, err = self.proc.communicate(timeout=600)
        assert self.proc.returncode == 0, err[-3000:]
        return read_json(self.dir / "summary.json")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def job_record(job: str) -> dict[str, str]:
    """`scontrol show job` as a dict, empty once Slurm forgot the job (no sacct here: it needs slurmdbd, which
    start_slurm.sh does not set up)."""
    out = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True).stdout
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


def log_paths(sweep_dir: Path, job: str) -> tuple[Path, Path]:
    """Where docs/cluster.md says a job's submitit log is: `<sweep dir>/.submitit/<job>/<job>_0_log.out|err`."""
    return (sweep_dir / ".submitit" / job / f"{job}_0_log.out", sweep_dir / ".submitit" / job / f"{job}_0_log.err")


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    """metrics.csv without its empty cells and without perf/ (wall-clock timings differ between any two runs)."""
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if v and not k.startswith("perf/")} for row in csv.DictReader(handle)]


def results_runs(sweep_dir: Path) -> tuple[str, list[dict[str, str]]]:
    """`python -m softqmix.results <sweep dir>`: its printed tables, and its runs.csv (every run with its status)."""
    proc = subprocess.run(
        [sys.executable, "-m", "softqmix.results", str(sweep_dir)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(sweep_dir / "results" / "runs.csv", newline="") as handle:
        return proc.stdout, list(csv.DictReader(handle))


def check_same_as_uninterrupted(run_dir: Path, reference: LocalRun, stopped_at: int) -> None:
    """The requeued run finished from its checkpoint, and its metrics and Q_tot are the uninterrupted run's."""
    expected, summary = reference.summary(), read_json(run_dir / "summary.json")
    assert summary["status"] == "completed" and summary["resumed_from_step"] == stopped_at
    assert (summary["env_steps"], summary["updates"]) == (expected["env_steps"], expected["updates"])
    assert metrics_rows(run_dir) == metrics_rows(reference.dir)  # row by row, value by value
    assert summary["matrix_game"]["q_tot"] == expected["matrix_game"]["q_tot"]
    assert not (run_dir / "preempted.json").exists()


# --- an array job of three seeds ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seed_sweep(slurm_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Sweep, int]:
    sweep = Sweep(tmp_path_factory.mktemp("slurm") / "seeds", [*TINY, "seed=0,1,2"])
    try:
        return sweep, sweep.wait()
    finally:
        sweep.stop()


def test_three_seed_sweep_is_one_array_job_and_the_results_list_each_seed(seed_sweep: tuple[Sweep, int]) -> None:
    sweep, returncode = seed_sweep
    assert returncode == 0, sweep.stderr[-3000:]
    (script,) = (sweep.dir / ".submitit").glob("*/*_submission.sh")
    sbatch = script.read_text()
    # one array job of three tasks, with conf/hydra/launcher/slurm.yaml's settings and the command line's
    for option in ("--array=0-2%3", "--cpus-per-task=1", "--mem=2GB", "--time=1440", "--signal=USR2@120"):
        assert f"#SBATCH {option}\n" in sbatch
    runs = sorted(p.parent.name for p in sweep.dir.glob("*/summary.json"))
    assert runs == [f"{i}_soft_qmix-default_nonmonotonic_s{i}" for i in range(3)]
    for i, run in enumerate(runs):
        assert read_json(sweep.dir / run / "summary.json")["seed"] == i

    printed, rows = results_runs(sweep.dir)
    assert [(r["method"], r["seed"], r["status"]) for r in rows] == [("soft_qmix", f"{i}", "completed") for i in "012"]
    assert re.search(r"\| matrix/nonmonotonic \| -?[0-9.]+ ± [0-9.]+ \(3\) \|", printed)  # mean ± std of 3 seeds


def test_each_jobs_submitit_log_is_where_the_docs_say(seed_sweep: tuple[Sweep, int]) -> None:
    sweep, _ = seed_sweep
    docs = (REPO_ROOT / "docs" / "cluster.md").read_text()
    assert "`<sweep dir>/.submitit/<job>/<job>_0_log.out`" in docs and "`<job>_0_log.err`" in docs
    (array,) = {job.split("_")[0] for job in sweep.jobs()}
    assert sweep.jobs() == [f"{array}_{i}" for i in range(3)]
    completions = JOBCOMP_LOG.read_text()
    for i, job in enumerate(sweep.jobs()):
        out, err = log_paths(sweep.dir, job)
        text = out.read_text()
        assert f"run dir: {sweep.dir / f'{i}_soft_qmix-default_nonmonotonic_s{i}'}\n" in text
        assert "Job completed successfully" in text and err.is_file()
        record = job_record(job)  # what Slurm knows: the same log file, a clean end
        assert (record["ArrayJobId"], record["ArrayTaskId"]) == (array, str(i))
        assert (record["JobState"], record["ExitCode"], record["StdOut"]) == ("COMPLETED", "0:0", str(out))
        assert re.search(rf"JobState=COMPLETED .* ArrayJobId={array} ArrayTaskId={i} ", completions)


# --- a failing run in the array --------------------------------------------------------------------------------


def test_a_failing_run_is_failed_in_the_results_and_in_the_sweeps_exit_code(
    tmp_path: Path, sweeps: list[Sweep]
) -> None:
    sweep_dir = tmp_path / "sweep"
    failing = "1_soft_qmix-default_nonmonotonic_s1"
    broken = sweep_dir / failing / "checkpoints" / "last.ckpt"  # job 1 will find it and refuse to resume from it
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"half a checkpoint")
    sweeps.append(sweep := Sweep(sweep_dir, [*TINY, "seed=0,1"]))
    assert sweep.wait() == 1, sweep.stderr[-3000:]
    assert sweep.stderr.strip().splitlines()[-1] == (
        "error: 1 of 2 runs of the sweep failed (error and traceback in each run's failed.json): "
        f"{sweep_dir.resolve() / failing} (ResumeRefused)"
    )
    _, rows = results_runs(sweep_dir)
    assert [(r["seed"], r["status"]) for r in rows] == [("0", "completed"), ("1", "failed")]
    assert "ResumeRefused" in read_json(sweep_dir / failing / "failed.json")["error"]
    markdown = (sweep_dir / "results" / "results.md").read_text()
    assert f"**failed** matrix/nonmonotonic soft_qmix seed 1 ({sweep_dir / failing})" in markdown
    # For Slurm both jobs ended well: the run's failure is caught and recorded by the run, not by the job's state.
    assert [job_record(job)["JobState"] for job in sweep.jobs()] == ["COMPLETED", "COMPLETED"]


# --- preemption: requeued by scontrol, and by a time limit ----------------------------------------------------


@pytest.fixture(scope="module")
def requeue_reference(slurm_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> LocalRun:
    """The uninterrupted run of the requeue test; it also tells how fast this machine trains."""
    return LocalRun(tmp_path_factory.mktemp("reference") / "run", [*EXACT, f"t_max={REQUEUE_T_MAX}"])


def test_scontrol_requeue_checkpoints_and_the_job_resumes_in_its_run_dir_to_the_same_result(
    tmp_path: Path, sweeps: list[Sweep], requeue_reference: LocalRun
) -> None:
    overrides = [*EXACT, f"t_max={REQUEUE_T_MAX}", "hydra.launcher.timeout_min=10"]
    sweeps.append(sweep := Sweep(tmp_path / "sweep", overrides))
    job, run_dir = sweep.job(), sweep.dir / RUN
    deadline = time.monotonic() + 120
    while not (run_dir / "metrics.csv").is_file() or len((run_dir / "metrics.csv").read_text().splitlines()) < 3:
        assert sweep.proc.poll() is None and time.monotonic() < deadline, "the job never started training"
        time.sleep(0.2)
    subprocess.run(["scontrol", "requeue", job], check=True)  # what an admin, or a preempting job, does

    assert sweep.wait() == 0, sweep.stderr[-3000:]
    out, err = (p.read_text() for p in log_paths(sweep.dir, job))
    stopped = re.search(r"preempted by signal 15 at env step (\d+); checkpoint saved", err)
    assert stopped, err[-3000:]  # Slurm's SIGTERM reached the run, which checkpointed
    record = job_record(job)
    assert (record["JobState"], record["Restarts"]) == ("COMPLETED", "1")
    # the requeued job appended to the same log and ran in the same run dir
    assert out.count(f"Starting with JobEnvironment(job_id={job},") == 2
    assert out.count(f"run dir: {run_dir}\n") == 2 and "Bypassing signal SIGTERM" in out
    check_same_as_uninterrupted(run_dir, requeue_reference, int(stopped.group(1)))


@pytest.fixture(scope="module")
def time_limit_t_max(requeue_reference: LocalRun) -> int:
    """t_max of a run that trains for TIME_LIMIT_TRAINING_S at the speed the reference run measured here and now."""
    measured = requeue_reference.summary()
    speed = measured["env_steps"] / measured["wall_seconds"]
    return max(REQUEUE_T_MAX, round(speed * TIME_LIMIT_TRAINING_S / 1000) * 1000)


def time_limited_sweep(
    sweeps: list[Sweep], sweep_dir: Path, t_max: int, max_num_timeout: int
) -> tuple[Sweep, dict[str, Any] | None]:
    """A one-job sweep of a 2-minute job with signal_delay_s=60, and the run's preempted.json if it was stopped.

    Slurm sends SIGUSR2 60 s before the job's end, or up to 30 s earlier (slurmctld looks at time limits every 30 s
    and sends the signal early rather than late): 30 to 60 s into the job, after Python's start even on a busy
    machine. Once the run has checkpointed, the job's limit goes up to 10 minutes, so that a requeued job finishes
    instead of being stopped again: Slurm and submitit requeue it with or without that.
    """
    limits = [
        "hydra.launcher.timeout_min=2",
        "hydra.launcher.signal_delay_s=60",
        f"hydra.launcher.max_num_timeout={max_num_timeout}",
    ]
    sweeps.append(sweep := Sweep(sweep_dir, [*EXACT, f"t_max={t_max}", *limits]))
    job, run_dir = sweep.job(), sweep_dir / RUN
    assert "#SBATCH --signal=USR2@60\n" in (sweep_dir / ".submitit" / job / f"{job}_submission.sh").read_text()
    preempted: list[dict[str, Any]] = []

    def extend_once_checkpointed() -> None:
        if not preempted and (run_dir / "preempted.json").is_file():
            preempted.append(read_json(run_dir / "preempted.json"))
            if max_num_timeout > 0:  # else the job is not requeued, and ends now
                subprocess.run(["scontrol", "update", f"JobId={job}", "TimeLimit=10"], check=True)

    sweep.wait(every=extend_once_checkpointed)
    return sweep, (preempted or [None])[0]


def test_time_limit_signal_checkpoints_submitit_requeues_and_the_job_resumes_to_the_same_result(
    tmp_path: Path, sweeps: list[Sweep], time_limit_t_max: int
) -> None:
    """The run is sized from this machine's speed to train for TIME_LIMIT_TRAINING_S, longer than the signal takes
    to come; if the machine got faster since and the run ended first, the test tries once more with twice the run."""
    for t_max in (time_limit_t_max, 2 * time_limit_t_max):
        reference = LocalRun(tmp_path / f"reference-{t_max}", [*EXACT, f"t_max={t_max}"])
        sweep, preempted = time_limited_sweep(sweeps, tmp_path / f"sweep-{t_max}", t_max, max_num_timeout=5)
        assert sweep.proc.returncode == 0, sweep.stderr[-3000:]
        if preempted is not None:
            break
        reference.stop()
    assert preempted is not None, f"the run ended before Slurm's time-limit signal, even with t_max={t_max}"
    assert preempted["stop_signal"] == signal.SIGUSR2
    job, run_dir = sweep.job(), sweep.dir / RUN
    out, err = (p.read_text() for p in log_paths(sweep.dir, job))
    assert f"preempted by signal 12 at env step {preempted['env_steps']}; checkpoint saved" in err
    # submitit's own handler got the signal after the checkpoint, counted a timeout and requeued the job
    assert f"Caught signal SIGUSR2 on {os.uname().nodename}: this job is timed-out." in out
    # (a signal during a slow start, before the run trains, would cost one more requeue, without a checkpoint)
    assert re.search(rf"Requeued job {job} \([34] remaining timeouts\)", out)
    assert int(job_record(job)["Restarts"]) >= 1 and out.count(f"run dir: {run_dir}\n") >= 2
    check_same_as_uninterrupted(run_dir, reference, preempted["env_steps"])


def test_a_run_out_of_requeues_is_preempted_in_the_results_and_fails_the_sweep(
    tmp_path: Path, sweeps: list[Sweep], time_limit_t_max: int
) -> None:
    """max_num_timeout=0: at the time-limit signal the run checkpoints and submitit will not requeue it. The sweep
    ends with SweepOutcome's line and exit code 1 (it used to end in Hydra's traceback of submitit's error).

    The run stops at the signal, so a run four times as long as the other time-limit test's costs nothing more and
    leaves no doubt that the signal comes first."""
    t_max = 4 * time_limit_t_max
    sweep, preempted = time_limited_sweep(sweeps, tmp_path / "sweep", t_max, max_num_timeout=0)
    assert preempted is not None, f"the run ended before Slurm's time-limit signal (t_max={t_max})"
    job, run_dir = sweep.job(), sweep.dir / RUN
    assert sweep.proc.returncode == 1, sweep.stderr[-3000:]
    assert "Traceback" not in sweep.stderr
    assert sweep.stderr.strip().splitlines()[-1] == (
        "error: 1 of 1 runs of the sweep failed (error and traceback in each run's failed.json): "
        f"{run_dir.resolve()} (preempted)"
    )
    assert preempted["stop_signal"] == signal.SIGUSR2 and 0 < preempted["env_steps"] < t_max
    out, err = (p.read_text() for p in log_paths(sweep.dir, job))
    assert "Job not requeued because: timed-out too many times." in out
    assert "[run 0 not requeued] UncompletedJobError: Job not requeued because: timed-out too many times." in err
    assert job_record(job)["Restarts"] == "0"
    _, rows = results_runs(sweep.dir)
    assert [(r["status"], r["error"]) for r in rows] == [
        ("preempted", f"stopped by signal 12 at env step {preempted['env_steps']}")
    ]
