"""One writer per run folder: for every pair of writers (run, resume, sweep job) the second
is refused in one line naming the folder and the process holding it, writes nothing, and
the first ends with exactly the figures of a run left alone.

The first writer is frozen (SIGSTOP) once its lock file names it, while the second tries
its luck, then let go (SIGCONT): the test never depends on how long anything takes.
"""

import csv
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from regrun.layout import LOCK
from regrun.rundir.lock import FolderInUse, holder, one_writer

TIMING = {"epoch_time_s"}
PYTHON = [sys.executable, "-m", "regrun"]


def base(root: Path, *extra: str) -> list[str]:
    return [f"dataset.root={root}", "dataset.download=false", "trainer.device=cpu", "trainer.batch_size=32",
            "trainer.epochs=2", "reg=l1_activations", *extra]


def regrun(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*PYTHON, *argv], cwd=cwd, env=os.environ | {"COLUMNS": "160"}, capture_output=True,
                          text=True, timeout=300)


def metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def files(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def hashes(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones included) → the SHA-256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@contextmanager
def frozen_writer(argv: list[str], folder: Path, cwd: Path) -> Iterator[subprocess.Popen]:
    """Start `regrun argv`, wait until it holds `folder`'s lock, and freeze it there; on
    leaving, let it go and wait for it to end (it is killed if the test failed)."""
    log = open(cwd / f"first-{time.monotonic_ns()}.log", "w")
    proc = subprocess.Popen([*PYTHON, *argv], cwd=cwd, env=os.environ | {"COLUMNS": "160"},
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not _names(folder / LOCK, proc.pid):
            assert proc.poll() is None, (cwd / log.name).read_text()
            assert time.monotonic() < deadline, "the first writer never took the lock"
            time.sleep(0.01)
        proc.send_signal(signal.SIGSTOP)
        yield proc
        proc.send_signal(signal.SIGCONT)
        assert proc.wait(timeout=300) == 0, Path(log.name).read_text()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait()
        log.close()


def _names(lock: Path, pid: int) -> bool:
    try:
        return lock.read_text().startswith(f"{pid}\n")
    except OSError:
        return False


def refused(second: subprocess.CompletedProcess, folder: Path, first: subprocess.Popen, prefix: str) -> None:
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert second.returncode == 2, second.stderr
    assert len(lines) == 1 and lines[0].startswith(prefix), second.stderr
    assert f"{folder}" in lines[0] and f"in use by another regrun process (pid {first.pid}: " in lines[0], lines[0]


@pytest.fixture(scope="module")
def left_alone(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The figures of the run that the first writer of every pair must end with."""
    out = tmp_path_factory.mktemp("alone") / "run"
    proc = regrun(*base(tiny_root, f"hydra.run.dir={out}"), cwd=out.parent)
    assert proc.returncode == 0, proc.stderr
    return metrics(out)


@pytest.fixture
def one_epoch_done(tiny_root: Path, tmp_path: Path) -> Path:
    """A run that did 1 of the 2 epochs, for a resume to finish."""
    out = tmp_path / "run"
    proc = regrun(*base(tiny_root, f"hydra.run.dir={out}", "trainer.epochs=1"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.heavy  # whole processes: `make test-heavy`
def test_run_then_run(tiny_root: Path, tmp_path: Path, left_alone: list[dict]) -> None:
    out = tmp_path / "run"
    with frozen_writer(base(tiny_root, f"hydra.run.dir={out}"), out, tmp_path) as first:
        before = files(out)
        second = regrun(*base(tiny_root, f"hydra.run.dir={out}", "seed=7"), cwd=tmp_path)  # another config
        refused(second, out, first, "regrun: error:")
        assert files(out) == before  # not even Hydra's .hydra/ of the second
    assert metrics(out) == left_alone


@pytest.mark.heavy  # whole processes: `make test-heavy`
def test_run_then_resume(tiny_root: Path, tmp_path: Path, left_alone: list[dict]) -> None:
    out = tmp_path / "run"
    with frozen_writer(base(tiny_root, f"hydra.run.dir={out}"), out, tmp_path) as first:
        before = files(out)
        refused(regrun("resume", str(out), cwd=tmp_path), out, first, "regrun resume: error:")
        assert files(out) == before
    assert metrics(out) == left_alone


@pytest.mark.heavy  # whole processes: `make test-heavy`
def test_resume_then_resume(one_epoch_done: Path, tmp_path: Path, left_alone: list[dict]) -> None:
    out = one_epoch_done
    with frozen_writer(["resume", str(out), "trainer.epochs=2"], out, tmp_path) as first:
        before = files(out)
        refused(regrun("resume", str(out), "trainer.epochs=2", cwd=tmp_path), out, first, "regrun resume: error:")
        assert files(out) == before
    assert metrics(out) == left_alone


@pytest.mark.heavy  # whole processes: `make test-heavy`
def test_resume_then_run(one_epoch_done: Path, tiny_root: Path, tmp_path: Path, left_alone: list[dict]) -> None:
    out = one_epoch_done
    with frozen_writer(["resume", str(out), "trainer.epochs=2"], out, tmp_path) as first:
        before = files(out)
        refused(regrun(*base(tiny_root, f"hydra.run.dir={out}"), cwd=tmp_path), out, first, "regrun: error:")
        assert files(out) == before
    assert metrics(out) == left_alone


@pytest.mark.heavy  # whole processes: `make test-heavy`
def test_sweep_job_then_run(tiny_root: Path, tmp_path: Path, left_alone: list[dict]) -> None:
    sweep = tmp_path / "sweep"
    with frozen_writer(["-m", *base(tiny_root, f"hydra.sweep.dir={sweep}", "seed=0")], sweep / "0", tmp_path) as first:
        before = files(sweep / "0")
        second = regrun(*base(tiny_root, f"hydra.run.dir={sweep / '0'}"), cwd=tmp_path)
        refused(second, sweep / "0", first, "regrun: error:")
        assert files(sweep / "0") == before
    assert metrics(sweep / "0") == left_alone


@pytest.mark.heavy  # whole processes: `make test-heavy`
def test_run_then_sweep_job(tiny_root: Path, tmp_path: Path, left_alone: list[dict]) -> None:
    sweep = tmp_path / "sweep"
    with frozen_writer(base(tiny_root, f"hydra.run.dir={sweep / '0'}"), sweep / "0", tmp_path) as first:
        before = files(sweep)
        second = regrun("-m", *base(tiny_root, f"hydra.sweep.dir={sweep}", "seed=0,1"), cwd=tmp_path)
        refused(second, sweep / "0", first, "regrun: error: hydra.sweep.dir=")
        assert files(sweep) == before  # no other job started either
    assert metrics(sweep / "0") == left_alone


@pytest.mark.heavy  # whole processes: `make test-heavy`
def test_a_refused_sweep_job_writes_nothing_into_the_other_run(tiny_root: Path, tmp_path: Path) -> None:
    """The job's folder holds a killed run of another config: the job is refused, and the
    folder keeps no `failed` summary of it (it stays resumable)."""
    sweep = tmp_path / "sweep"
    killed = regrun(*base(tiny_root, f"hydra.run.dir={sweep / '0'}", "trainer.epochs=1"), cwd=tmp_path)
    assert killed.returncode == 0, killed.stderr
    (sweep / "0" / "summary.json").unlink()  # as a SIGKILL leaves it
    before = hashes(sweep / "0")  # every file: Hydra's .hydra/, regrun.log and the lock's too
    sweeping = regrun("-m", *base(tiny_root, f"hydra.sweep.dir={sweep}", "seed=5"), cwd=tmp_path)
    assert "already holds another run (seed differs)" in sweeping.stdout + sweeping.stderr
    assert hashes(sweep / "0") == before and not (sweep / "0" / "summary.json").exists()


@pytest.mark.heavy  # whole processes: `make test-heavy`
def test_the_lock_is_released_when_its_holder_is_killed(tmp_path: Path) -> None:
    code = ("import sys, time; from pathlib import Path; from regrun.rundir.lock import one_writer\n"
            "with one_writer(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "held\n"
        assert holder(tmp_path) == f"pid {proc.pid}: -c {tmp_path}"
        with pytest.raises(FolderInUse, match=rf"{tmp_path} is in use by another regrun process \(pid {proc.pid}"):
            with one_writer(tmp_path):
                pass
    finally:
        proc.kill()  # SIGKILL: no handler runs, the OS drops the lock
        proc.wait()
        proc.stdout.close()
    assert holder(tmp_path) is None
    with one_writer(tmp_path), one_writer(tmp_path):  # free now, and re-entrant within a process
        assert (tmp_path / LOCK).read_text().startswith(f"{os.getpid()}\n")


@pytest.mark.heavy  # whole processes: `make test-heavy`
def test_a_lock_file_of_any_bytes_names_no_one(tmp_path: Path) -> None:
    (tmp_path / LOCK).write_bytes(b"\xff\x00garbage\n\n\n")
    assert holder(tmp_path) is None  # nobody holds it: the bytes are not trusted
    with one_writer(tmp_path):
        assert (tmp_path / LOCK).read_text().startswith(f"{os.getpid()}\n")


@pytest.mark.heavy  # whole processes: `make test-heavy`
def test_two_concurrent_writers_and_refused_runs_leave_every_other_run_byte_identical(
        tiny_root: Path, tmp_path: Path, left_alone: list[dict]) -> None:
    """A run is being written (frozen) while a second run and a resume try its folder, and a
    run of another config and a sweep job try a finished run's folder: all four are refused,
    and both folders hash as they did, every file (.hydra/, regrun.log, .lock) included."""
    busy, done = tmp_path / "busy", tmp_path / "done"
    assert regrun(*base(tiny_root, f"hydra.run.dir={done}"), cwd=tmp_path).returncode == 0
    shutil.copytree(done, tmp_path / "sweep" / "0")
    with frozen_writer(base(tiny_root, f"hydra.run.dir={busy}"), busy, tmp_path) as first:
        before = {folder: hashes(folder) for folder in (busy, done, tmp_path / "sweep" / "0")}
        refused(regrun(*base(tiny_root, f"hydra.run.dir={busy}"), cwd=tmp_path), busy, first, "regrun: error:")
        refused(regrun("resume", str(busy), cwd=tmp_path), busy, first, "regrun resume: error:")
        other = regrun(*base(tiny_root, f"hydra.run.dir={done}", "seed=3"), cwd=tmp_path)
        assert other.returncode == 2 and f"{done} already holds another run (seed differs)" in other.stderr
        sweeping = regrun("-m", *base(tiny_root, f"hydra.sweep.dir={tmp_path / 'sweep'}", "seed=4"), cwd=tmp_path)
        assert "already holds another run (seed differs)" in sweeping.stdout + sweeping.stderr
        assert {folder: hashes(folder) for folder in before} == before
    assert metrics(busy) == left_alone


def test_a_folder_left_as_found_keeps_the_last_holders_name(tmp_path: Path) -> None:
    with one_writer(tmp_path):
        pass
    named = (tmp_path / LOCK).read_bytes()
    with one_writer(tmp_path, keep=True):  # a writer that looks, then refuses
        assert (tmp_path / LOCK).read_text().startswith(f"{os.getpid()}\n")
    assert (tmp_path / LOCK).read_bytes() == named


def test_a_folder_claimed_and_left_as_found_is_gone_again(tmp_path: Path) -> None:
    claimed = tmp_path / "new" / "run"
    with one_writer(claimed, keep=True):
        assert (claimed / LOCK).exists()
    assert not claimed.exists()
    with one_writer(claimed, keep=True), one_writer(claimed, keep=False):  # the job goes on to write a run
        pass
    assert (claimed / LOCK).read_text().startswith(f"{os.getpid()}\n")
