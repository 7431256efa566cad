"""Stop requests: Ctrl-C and SIGTERM (what Slurm sends before preempting a job) stop a run
within a second wherever it is, ending it `interrupted` and resumable; a second Ctrl-C
aborts at once.

Where the run polls (`polled`: the training loop, between steps and between evaluation
batches) a signal only sets the request, and the loop stops at the next boundary with a
checkpoint. Where it does not (`immediate`: a job's start-up, importing torch, building
the model, loading data, connecting to a tracker) the signal raises `StopNow` there and
then. Elsewhere (Hydra composing the config) it sets the request, which the job sees as
it starts.

One request per process: in a sweep run by Hydra's basic launcher, the jobs after the one
that was stopped see the request too and do not start.
"""

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from regrun.layout import EXIT_CODES, EXIT_OTHER, EXIT_SIGNAL, INTERRUPTED

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopNow(KeyboardInterrupt):
    """A stop signal that arrived where nothing polls for it: it unwinds the code running
    (a KeyboardInterrupt, so code that contains user errors lets it through)."""


class StopRequest:
    """Callable flag: `stop()` is true once a stop signal has arrived."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._immediate = False

    def __call__(self) -> bool:
        return self.signum is not None

    def install(self) -> None:
        """Handle SIGINT and SIGTERM from now on (call from the main thread)."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: the user does not want to wait
        self.signum = signum
        if self._immediate:
            raise StopNow(self.name)

    @contextmanager
    def immediate(self) -> Iterator[None]:
        """In the block, a stop signal raises `StopNow` at once; one that came before raises it on entry."""
        with self._mode(True):
            if self():
                raise StopNow(self.name)
            yield

    @contextmanager
    def polled(self) -> Iterator[None]:
        """In the block, a stop signal only sets the request: the code there polls for it."""
        with self._mode(False):
            yield

    @contextmanager
    def _mode(self, immediate: bool) -> Iterator[None]:
        saved, self._immediate = self._immediate, immediate
        try:
            yield
        finally:
            self._immediate = saved

    @property
    def name(self) -> str:
        """The signal's name, e.g. SIGTERM."""
        return signal.Signals(self.signum).name if self.signum else ""

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return EXIT_SIGNAL + (self.signum or 0)


STOP = StopRequest()


def exit_code(status: str) -> int:
    """0 completed; 2 failed (a config error); 128 + the signal's number when interrupted
    here by one; 1 for any other end (diverged, interrupted elsewhere, incomplete)."""
    if status == INTERRUPTED and STOP():
        return STOP.exit_code
    return EXIT_CODES.get(status, EXIT_OTHER)
