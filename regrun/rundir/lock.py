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
from pathlib import Path

from regrun.errors import RegrunError
from regrun.layout import LOCK


class FolderInUse(RegrunError):
    """The run folder belongs to another writer: refuse, and write nothing into it."""


_HELD: dict[Path, tuple[int, int]] = {}  # folder → (open lock file descriptor, depth)
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
def one_writer(folder: Path) -> Iterator[None]:
    """Hold `folder`'s lock while the block runs; another process holding it is a
    `FolderInUse` error naming the folder and the holder. Creates the folder."""
    key = folder.resolve()  # one key for every spelling of the folder (.., symbolic links)
    with _GUARD:
        if key in _HELD:
            fd, depth = _HELD[key]
            _HELD[key] = (fd, depth + 1)
        else:
            _HELD[key] = (_acquire(folder), 1)
    try:
        yield
    finally:
        with _GUARD:
            fd, depth = _HELD.pop(key)
            if depth > 1:
                _HELD[key] = (fd, depth - 1)
            else:
                os.close(fd)  # closing the last descriptor releases the flock


def _acquire(folder: Path) -> int:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise RegrunError(f"{folder} cannot be written ({err.strerror}); "
                          "allowed: a folder this user can write") from err
    if not _try_lock(fd):
        who = _describe(fd)
        os.close(fd)
        raise FolderInUse(f"{folder} is in use by another regrun process ({who}); one writer per run "
                          "folder: wait until it ends, or choose another folder") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{command_line()}\n".encode())
    except OSError:
        pass  # a full disk: the lock holds all the same, only its holder goes unnamed
    return fd


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
