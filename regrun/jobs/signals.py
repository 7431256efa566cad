"""Stop requests: Ctrl-C and SIGTERM (what Slurm sends before preempting a job) ask a run
to stop at the next step boundary, save a checkpoint and write its files; a second Ctrl-C
aborts at once.

One request per process: in a sweep run by Hydra's basic launcher, the jobs after the one
that was stopped see the request too and do not start.
"""

import signal
from types import FrameType

from regrun.layout import EXIT_CODES, EXIT_OTHER, INTERRUPTED

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Callable flag: `stop()` is true once a stop signal has arrived."""

    def __init__(self) -> None:
        self.signum: int | None = None

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

    @property
    def name(self) -> str:
        """The signal's name, e.g. SIGTERM."""
        return signal.Signals(self.signum).name if self.signum else ""

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + (self.signum or 0)


STOP = StopRequest()


def exit_code(status: str) -> int:
    """0 completed; 2 failed (a config error); 128 + the signal's number when interrupted
    here by one; 1 for any other end (diverged, interrupted elsewhere, incomplete)."""
    if status == INTERRUPTED and STOP():
        return STOP.exit_code
    return EXIT_CODES.get(status, EXIT_OTHER)
