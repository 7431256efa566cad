"""Faults and damaged run folders, table-driven, through the real entry point (`regrun.cli.main`,
in process): another writer holding a folder, damaged archives, writes that fail (disk full,
permissions, the folder removed), and any bytes in any file of a run directory.

Exit codes (README, "Interruptions, resume and bad input"): 2 with one line on stderr for
each case of the first three tables, never a traceback; `regrun compare` exits 0 and
reports a damaged run as `broken` (or `incomplete`) with the reason in its error.
"""

import builtins
import csv
import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import write_dataset
from test_errors import one_line_error

from regrun.cli import main
from regrun.rundir import files as rundir

pytestmark = pytest.mark.usefixtures("keep_signal_handlers")  # main() installs its own

RUN = ["dataset.download=false", "trainer.device=cpu", "trainer.batch_size=32"]
RUN2 = [*RUN, "trainer.epochs=2"]  # two epochs: a checkpoint, then another


# ---- another writer holds the folder --------------------------------------------------------
# (case, argv after `regrun`, fragment). {busy} is a folder, {busydone} a finished run and
# {busysweep}/0 a sweep's job folder, each locked by the process {pid}.
LOCKED = [
    ("run into a folder another process writes", ["dataset.root={root}", *RUN2, "hydra.run.dir={busy}"],
     "{busy} is in use by another regrun process (pid {pid}: -c "),
    ("same config into a finished run another process writes", ["dataset.root={root}", *RUN2, "hydra.run.dir={busydone}"],
     "{busydone} is in use by another regrun process (pid {pid}"),
    ("resume a run another process writes", ["resume", "{busydone}", "trainer.epochs=3"],
     "{busydone} is in use by another regrun process (pid {pid}"),
    ("sweep into a folder whose job another process writes",
     ["-m", "dataset.root={root}", *RUN2, "seed=1,2", "hydra.sweep.dir={busysweep}"],
     "hydra.sweep.dir={busysweep}: its job folder {busysweep}/0 is in use by another regrun process (pid {pid}"),
]

# ---- damaged data --------------------------------------------------------------------------
DATA = [
    ("truncated .gz", "{tmp}/cut-gz", "{tmp}/cut-gz/MNIST/raw/train-images-idx3-ubyte.gz: not a whole gzip file "
                                      "(Compressed file ended before the end-of-stream marker was reached)"),
    ("a .gz that is not gzip", "{tmp}/not-gz", "{tmp}/not-gz/MNIST/raw/train-labels-idx1-ubyte.gz: not a whole "
                                               "gzip file (Not a gzipped file (b'no'))"),
]

# ---- writes that fail ----------------------------------------------------------------------
# (case, file, which write of it fails (1 = the first), fault, the one line's fragment).
WRITES = [
    ("disk full writing the second checkpoint", "checkpoint.pt", 2, "full", "No space left on device"),
    ("disk full writing the first checkpoint", "checkpoint.pt", 1, "full", "No space left on device"),
    ("disk full writing metrics.csv", "metrics.csv", 2, "full", "No space left on device"),
    ("disk full writing model.pt", "model.pt", 1, "full", "No space left on device"),
    ("disk full writing config.json", "config.json", 1, "full", "No space left on device"),
    ("permission denied on the checkpoint", "checkpoint.pt", 2, "denied", "Permission denied"),
    ("permission denied on summary.json", "summary.json", 1, "denied", "Permission denied"),
    ("run folder removed under the run", "checkpoint.pt", 2, "removed", "No such file or directory"),
]

# ---- any bytes in the files of a run directory: resume and the continuation refuse ------------
LOOP = "symlink loop"
# (case, file, its new content (bytes, JSON-able, or LOOP), fragment).
DAMAGE = [
    ("config.json garbage", "config.json", b"{not json", "config.json is unreadable (Expecting property name"),
    ("config.json binary", "config.json", b"\xff\xfe\x00\x81", "config.json is unreadable ('utf-8' codec can't decode"),
    ("config.json a list", "config.json", [], "config.json is not a regrun config (expected an object with seed"),
    ("config.json of the wrong shape", "config.json", {"status": 3}, "config.json is not a regrun config"),
    ("config.json with a section not an object", "config.json", "TRAINER_NULL", "config.json is not a regrun config"),
    ("config.json a symlink loop", "config.json", LOOP, "config.json is unreadable (Too many levels of symbolic links)"),
    ("config.json a folder", "config.json", "FOLDER", "config.json is unreadable (Is a directory)"),
    ("checkpoint.pt lacking its keys", "checkpoint.pt", "PARTIAL_CHECKPOINT",
     "checkpoint.pt: not a whole regrun checkpoint (no config, model, optimizer"),
    ("checkpoint.pt a folder", "checkpoint.pt", "FOLDER", "checkpoint.pt: not a readable regrun checkpoint ("),
    ("metrics.csv binary", "metrics.csv", b"epoch\n\xff\xfe\x00\x81\n", "metrics.csv: unreadable ('utf-8' codec"),
]
# (case, overrides of a resume, fragment).
OVERRIDES = [
    ("epochs as text", ["trainer.epochs=abc"], "trainer.epochs must be a positive integer, got 'abc'"),
    ("epochs negative", ["trainer.epochs=-3"], "trainer.epochs must be a positive integer, got -3"),
    ("epochs an interpolation", ["trainer.epochs=${nope}"], "trainer.epochs must be a positive integer, got '${nope}'"),
    ("epochs a float", ["trainer.epochs=2.5"], "trainer.epochs must be a positive integer, got 2.5"),
    ("an override without =", ["trainer.epochs"], "'trainer.epochs': a resume can change only"),
    ("an unparsable override", ["trainer.device=[cpu"], "bad override ['trainer.device=[cpu']"),
]

# ---- `regrun compare` reads any bytes and reports the run ------------------------------------
# (case, file, content, status shown, fragment of the run's error).
COMPARED = [
    ("summary.json a list", "summary.json", [], "broken", "a JSON list, not an object"),
    ("summary.json status a number", "summary.json", {"status": 3}, "broken", "status 3 is not one of completed"),
    ("summary.json final a string", "summary.json", {"status": "completed", "final": "x"}, "broken",
     "final is a JSON str, not an object"),
    ("summary.json binary", "summary.json", b"\xff\xfe\x00garbage", "broken", "summary.json unreadable"),
    ("summary.json a symlink loop", "summary.json", LOOP, "broken", "Too many levels of symbolic links"),
    ("summary.json final of text figures", "summary.json", {"status": "completed", "final": {"test_acc": "x"}},
     "completed", None),
    ("metrics.csv ragged, no summary", "metrics.csv", b"epoch,test_acc\n1,0.5,9,9\n2\n\x00,,\n", "incomplete",
     "no summary.json"),
    ("targets.json of the wrong shape, no summary", "targets.json", [{"site": "activations", "tensor": [1]}],
     "incomplete", "no summary.json"),
    ("overrides.yaml binary", ".hydra/overrides.yaml", b"\xff\xfe\x00", "completed", None),
    ("hydra.yaml binary", ".hydra/hydra.yaml", b"\xff\xfe\x00", "completed", None),
]


def call(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["regrun", *argv])
    try:
        main()
        code = 0  # a completed single run returns
    except SystemExit as exit_info:
        code = exit_info.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def done(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run (1 of 2 epochs: resumable with trainer.epochs=2 or more)."""
    out = tmp_path_factory.mktemp("done") / "run"
    proc = subprocess.run([sys.executable, "-m", "regrun", f"dataset.root={tiny_root}", *RUN, "trainer.epochs=1",
                           f"hydra.run.dir={out}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory, tiny_root: Path, done: Path) -> Iterator[dict[str, str]]:
    """Damaged data, and folders held by another process (killed at the end)."""
    tmp = tmp_path_factory.mktemp("faults")
    for name, damage in (("cut-gz", ("train-images-idx3-ubyte.gz", lambda b: b[:len(b) // 2])),
                         ("not-gz", ("train-labels-idx1-ubyte.gz", lambda b: b"no gzip"))):
        raw = write_dataset(tmp / name, compress=True) / "MNIST" / "raw"
        raw.joinpath(damage[0]).write_bytes(damage[1](raw.joinpath(damage[0]).read_bytes()))
    shutil.copytree(done, tmp / "busydone")
    busy = [tmp / "busy", tmp / "busydone", tmp / "busysweep" / "0"]
    code = ("import sys, time; from pathlib import Path; from contextlib import ExitStack\n"
            "from regrun.rundir.lock import one_writer\n"
            "with ExitStack() as held:\n"
            "    for folder in sys.argv[1:]: held.enter_context(one_writer(Path(folder)))\n"
            "    print('held', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code, *map(str, busy)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        yield {"tmp": str(tmp), "root": str(tiny_root), "busy": str(busy[0]), "busydone": str(busy[1]),
               "busysweep": str(tmp / "busysweep"), "pid": str(holder.pid)}
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def files(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(("case", "argv", "fragment"), LOCKED, ids=[c[0] for c in LOCKED])
def test_a_folder_another_process_writes_is_refused(case: str, argv: list[str], fragment: str, places: dict[str, str],
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    before = files(Path(places["tmp"]))
    code, _, err = call([a.format(**places) for a in argv], monkeypatch, capsys)
    prefix = "regrun resume: error:" if argv[0] == "resume" else "regrun: error:"
    one_line_error(code, err, fragment.format(**places), prefix)
    assert files(Path(places["tmp"])) == before  # not a byte written anywhere


@pytest.mark.parametrize(("case", "root", "fragment"), DATA, ids=[c[0] for c in DATA])
def test_a_damaged_archive_is_one_line(case: str, root: str, fragment: str, places: dict[str, str], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    raw = Path(root.format(**places)) / "MNIST" / "raw"
    code, _, err = call([f"dataset.root={raw.parent.parent}", *RUN2, f"hydra.run.dir={tmp_path}/run"],
                        monkeypatch, capsys)
    one_line_error(code, err, fragment.format(**places), "regrun: error:")
    damaged = Path(fragment.format(**places).split(":")[0])
    assert not damaged.with_suffix("").exists() and not list(raw.glob(".*"))  # no partial file, no temporary file


class FullDisk:
    """A file that takes a few bytes, then answers as a full disk does."""

    def __init__(self, file):
        self.file, self.room = file, 10

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            self.file.write(bytes(data[:self.room]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()

    def __enter__(self) -> "FullDisk":
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def inject(monkeypatch: pytest.MonkeyPatch, run: Path, name: str, nth: int, fault: str) -> None:
    """Make the `nth` write of `name` in the run folder fail with `fault`."""
    seen = {"writes": 0}

    def faulty_open(path: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        if Path(str(path)).name == f".{name}.tmp" and "w" in mode:
            seen["writes"] += 1
            if seen["writes"] == nth:
                if fault == "denied":
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
                if fault == "removed":
                    shutil.rmtree(run)
                if fault == "full":
                    return FullDisk(builtins.open(path, mode, *args, **kwargs))
        return builtins.open(path, mode, *args, **kwargs)

    monkeypatch.setattr(rundir, "open", faulty_open, raising=False)


@pytest.mark.parametrize(("case", "name", "nth", "fault", "reason"), WRITES, ids=[c[0] for c in WRITES])
def test_a_failed_write_is_one_line_and_loses_nothing(case: str, name: str, nth: int, fault: str, reason: str,
                                                      tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    inject(monkeypatch, out, name, nth, fault)
    code, _, err = call([f"dataset.root={tiny_root}", *RUN2, f"hydra.run.dir={out}"], monkeypatch, capsys)
    one_line_error(code, err, f"cannot write {out}/{name}: {reason}", "regrun: error:")
    if fault == "removed":
        assert not out.exists()
        return
    assert not list(out.glob(".*.tmp"))  # no temporary file left behind
    if name == "checkpoint.pt" and nth == 2:  # the last good checkpoint: intact, epoch 1
        assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    summary = json.loads((out / "summary.json").read_text()) if name != "summary.json" else None
    if summary is not None:
        assert summary["status"] == "failed" and summary["error"] == err.split("error: ", 1)[1].strip()
        assert summary["resumable"] is True


def test_after_a_full_disk_resume_ends_with_the_figures_of_a_run_left_alone(
        tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    alone, out = tmp_path / "alone", tmp_path / "run"
    assert call([f"dataset.root={tiny_root}", *RUN2, f"hydra.run.dir={alone}"], monkeypatch, capsys)[0] == 0
    with monkeypatch.context() as patch:
        inject(patch, out, "checkpoint.pt", 2, "full")
        assert call([f"dataset.root={tiny_root}", *RUN2, f"hydra.run.dir={out}"], patch, capsys)[0] == 2
    assert call(["resume", str(out)], monkeypatch, capsys)[0] == 0  # the failure was marked resumable
    assert metrics(out) == metrics(alone)
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"


def metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in csv.DictReader(f)]


def damaged_copy(done: Path, tmp_path: Path, name: str, content: object) -> Path:
    run = tmp_path / "run"
    shutil.copytree(done, run)
    target = run / name
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink(missing_ok=True)
    if content == LOOP:
        target.symlink_to(target.name)
    elif content == "FOLDER":
        target.mkdir()
    elif content == "TRAINER_NULL":
        target.write_text(json.dumps(json.loads((done / name).read_text()) | {"trainer": None}))
    elif content == "PARTIAL_CHECKPOINT":
        torch.save({"format": 1}, target)
    elif isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(json.dumps(content))
    return run


@pytest.mark.parametrize(("case", "name", "content", "fragment"), DAMAGE, ids=[c[0] for c in DAMAGE])
@pytest.mark.parametrize("how", ["resume", "continuation"])
def test_a_damaged_run_is_refused_in_one_line(case: str, name: str, content: object, fragment: str, how: str,
                                              done: Path, tiny_root: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    run = damaged_copy(done, tmp_path, name, content)
    before = {p: b for p, b in files(run).items() if p.name != ".lock"}
    if how == "resume":
        argv, prefix = ["resume", str(run), "trainer.epochs=2"], "regrun resume: error:"
    else:  # the same config pointed at the folder: Hydra's job continues it
        argv, prefix = [f"dataset.root={tiny_root}", *RUN, "trainer.epochs=1", f"hydra.run.dir={run}"], "regrun: error:"
    code, _, err = call(argv, monkeypatch, capsys)
    if how == "continuation" and name == "metrics.csv":  # a completed run is left as it is: no need to read it
        assert code == 0, err
        return
    if how == "continuation" and name == "checkpoint.pt":  # nor its checkpoint
        assert code == 0, err
        return
    one_line_error(code, err, f"{run}/{fragment}", prefix)
    after = {p: b for p, b in files(run).items() if p.name != ".lock" and ".hydra" not in p.parts
             and p.name != "regrun.log"}
    assert after == {p: b for p, b in before.items() if ".hydra" not in p.parts and p.name != "regrun.log"}


@pytest.mark.parametrize(("case", "overrides", "fragment"), OVERRIDES, ids=[c[0] for c in OVERRIDES])
def test_a_bad_resume_override_is_one_line(case: str, overrides: list[str], fragment: str, done: Path,
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    before = {p: b for p, b in files(done).items() if p.name != ".lock"}
    code, _, err = call(["resume", str(done), *overrides], monkeypatch, capsys)
    one_line_error(code, err, fragment, "regrun resume: error:")
    assert {p: b for p, b in files(done).items() if p.name != ".lock"} == before


@pytest.mark.parametrize(("case", "name", "content", "status", "fragment"), COMPARED, ids=[c[0] for c in COMPARED])
def test_compare_reports_a_damaged_run(case: str, name: str, content: object, status: str, fragment: str | None,
                                       done: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture) -> None:
    run = damaged_copy(done, tmp_path, name, content)
    if name != "summary.json" and status == "incomplete":
        (run / "summary.json").unlink()
    (tmp_path / "other").symlink_to(tmp_path)  # a link back up the tree: each run is still read once
    code, out, err = call(["compare", "--format", "json", str(tmp_path)], monkeypatch, capsys)
    assert code == 0 and "Traceback" not in err, err
    [row] = json.loads(out)
    assert row["status"] == status
    if fragment:
        assert fragment in row["error"]


def test_the_tables_hold_at_least_forty_cases() -> None:
    assert len(LOCKED) + len(DATA) + len(WRITES) + 2 * len(DAMAGE) + len(OVERRIDES) + len(COMPARED) >= 40


class FullText:
    """A text file that takes a few characters, then answers as a full disk does."""

    def __init__(self, file):
        self.file = file

    def write(self, data: str) -> int:
        self.file.write(data[:10])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self) -> "FullText":
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def test_a_full_disk_as_hydra_writes_its_files_is_one_line_and_leaves_nothing(
        tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import hydra.core.utils as hydra_utils

    out = tmp_path / "run"
    argv = [f"dataset.root={tiny_root}", *RUN, "trainer.epochs=1", f"hydra.run.dir={out}"]

    def full_disk(path: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        file = builtins.open(path, mode, *args, **kwargs)
        return FullText(file) if Path(str(path)).parent.name == ".hydra" else file

    with monkeypatch.context() as patch:
        patch.setattr(hydra_utils, "open", full_disk, raising=False)
        code, _, err = call(argv, patch, capsys)
    one_line_error(code, err, f"cannot write {out}/.hydra/config.yaml: No space left on device; free some space "
                              "and run it again", "regrun: error:")
    assert not out.exists()  # no half-written .hydra/, no lock file, no folder
    assert call(argv, monkeypatch, capsys)[0] == 0  # the same command, once there is room
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"
    assert call(["resume", str(out), "trainer.epochs=2"], monkeypatch, capsys)[0] == 0
