"""One writer per run directory: an advisory lock held for the whole life of a run or a resume.

The lock is an `fcntl.flock` on `.lock` in the run directory. The operating system
releases it when the process ends, however it ends (SIGKILL, a power cut), so a lock is
never stale; the file stays, holding the last holder's pid and command line, which is
what a refused writer names. Torch-free: the command line refuses a second writer
before it imports torch.

Within one process the lock is re-entrant (the command takes it, then `run` takes it
again), because flock locks taken through two opens of one file exclude each other
even within a process.
"""

import fcntl
import os
import shlex
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from regrun.errors import RegrunError
from regrun.layout import LOCK


class FolderInUse(RegrunError):
    """The run folder belongs to another writer: refuse, and write nothing into it."""


@dataclass
class _Held:
    """A lock this process holds: its open file, how deep, and what to leave when it is released."""

    fd: int
    depth: int
    before: bytes | None  # the lock file's bytes before this process took it; None: no file
    created: bool  # the folder did not exist before this process took the lock
    keep: bool = False  # leave the folder as it was found (a writer that refuses, writes nothing)


_HELD: dict[Path, _Held] = {}  # folder → the lock held
_GUARD = threading.Lock()


def command_line() -> str:
    """This process's command as a person typed it: `regrun trainer.epochs=3`."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if name == "__main__.py":  # python -m regrun
        name = Path(sys.argv[0]).parent.name
    return shlex.join([name, *sys.argv[1:]])


def holder(folder: Path) -> str | None:
    """Who else holds the lock of `folder` ("pid 123: regrun ..."), or None when nobody
    does, or this process does."""
    if folder.resolve() in _HELD:
        return None
    try:
        fd = os.open(folder / LOCK, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _describe(fd)
    finally:
        os.close(fd)  # also releases a shared lock taken just to look
    return None


@contextmanager
def one_writer(folder: Path, keep: bool | None = None) -> Iterator[None]:
    """Hold `folder`'s lock while the block runs; another process holding it is a
    `FolderInUse` error naming the folder and the holder. Creates the folder.

    `keep` (at any depth; None leaves it as it is): once the lock is released, leave the
    folder as it was found: the lock file's bytes (the last holder's name), or no lock file
    and, if the lock created the folder, no folder (when nothing else was written into it).
    The command claims a folder so, before Hydra runs; the job that writes a run into it
    turns `keep` off, and one that refuses the folder leaves it byte for byte."""
    key = folder.resolve()  # one key for every spelling of the folder (.., symbolic links)
    with _GUARD:
        if key in _HELD:
            _HELD[key].depth += 1
        else:
            _HELD[key] = _acquire(folder)
        if keep is not None:
            _HELD[key].keep = keep
    try:
        yield
    finally:
        with _GUARD:
            held = _HELD[key]
            held.depth -= 1
            if not held.depth:
                del _HELD[key]
                _release(held, folder)


def _release(held: _Held, folder: Path) -> None:
    """Close the last descriptor (which releases the flock), leaving the file as it was found when `keep`."""
    try:
        before = held.before
        if held.keep and before is None:
            (folder / LOCK).unlink(missing_ok=True)
            if held.created:
                folder.rmdir()  # only if empty: what another writer put there stays
        elif held.keep and before is not None:
            os.ftruncate(held.fd, 0)
            os.pwrite(held.fd, before, 0)
    except OSError:
        pass  # the folder is gone, or the disk full: the lock is released all the same
    finally:
        os.close(held.fd)


def _acquire(folder: Path) -> _Held:
    path = folder / LOCK
    try:
        created = not folder.exists()
        folder.mkdir(parents=True, exist_ok=True)
        existed = path.is_file()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise RegrunError(f"{folder} cannot be written ({err.strerror}); "
                          "allowed: a folder this user can write") from err
    if not _try_lock(fd):
        who = _describe(fd)
        os.close(fd)
        raise FolderInUse(f"{folder} is in use by another regrun process ({who}); one writer per run "
                          "folder: wait until it ends, or choose another folder") from None
    before = os.pread(fd, 1 << 16, 0) if existed else None  # read under the lock: no writer changes it now
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{command_line()}\n".encode())
    except OSError:
        pass  # a full disk: the lock holds all the same, only its holder goes unnamed
    return _Held(fd, 1, before, created)


def _try_lock(fd: int) -> bool:
    """Take the lock if it is free; a few tries, because `holder` of another process takes
    it shared for an instant just to look."""
    for _ in range(5):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            threading.Event().wait(0.01)
    return False


def _describe(fd: int) -> str:
    """The holder as its lock file names it; tolerant of any bytes (the file is not trusted)."""
    text = ""
    for _ in range(50):  # the holder writes its pid just after it locks: give it a moment
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        if text.strip():
            break
        threading.Event().wait(0.02)
    pid, _, command = text.strip().partition("\n")
    if not pid.isdigit():
        return "pid unknown"
    command = " ".join(command.split())[:200]
    return f"pid {pid}: {command}" if command else f"pid {pid}"
