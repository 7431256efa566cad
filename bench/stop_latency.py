"""How long `regrun` takes to end after Ctrl-C (SIGINT) outside the training loop's steps.

Three places, each through the real `regrun` command (a subprocess), on tiny data written
into a temporary folder, the signal sent once a marker says the process is there:

start-up      the run's folder holds Hydra's .hydra/config.yaml: the job has started and is
              importing torch, building the model, loading the data.
factory       a model factory of the user's own that takes a minute (it sleeps).
evaluation    the final evaluation, whose batches take 0.2 s each (23 of them).

Each figure is the time from the signal to the process's end, and its exit code. The
target is under a second each, exit 130.

    .venv/bin/python bench/stop_latency.py               # the code on the Python path
    .venv/bin/python bench/stop_latency.py --repeats 5
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REGRUN = str(Path(sys.executable).parent / "regrun")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import SLOW_MODELS, write_dataset  # noqa: E402  (the tests' tiny data and slow model)

from regrun.layout import HYDRA, HYDRA_CONFIG  # noqa: E402

PLACES = {"start-up": ("", f"{HYDRA}/{HYDRA_CONFIG}"), "factory": ("slow_start", "starting"),
          "evaluation": ("slow_eval", "evaluating")}


def once(place: str, work: Path, root: Path) -> tuple[float, int]:
    """Start a run, signal it where `place` says; (seconds from the signal to the end, exit code)."""
    flag, marker = PLACES[place]
    out = work / f"run-{time.monotonic_ns()}"
    for name in ("slow_start", "slow_eval", "starting", "evaluating"):
        (work / name).unlink(missing_ok=True)
    if flag:
        (work / flag).touch()
    args = ["model=custom", "model.factory=slow_models:net", f"dataset.root={root}", "dataset.download=false",
            "trainer.device=cpu", "trainer.epochs=1", "trainer.batch_size=32", "trainer.eval_batch_size=7",
            f"hydra.run.dir={out}"]
    proc = subprocess.Popen([REGRUN, *args], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    where = out / marker if place == "start-up" else work / marker
    while not where.exists():
        if proc.poll() is not None:
            raise SystemExit(f"{place}: the run ended before the signal")
        time.sleep(0.005)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=300)
    return time.perf_counter() - sent, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = write_dataset(work / "data")
        (work / "slow_models.py").write_text(SLOW_MODELS)
        print(f"regrun: {REGRUN}; PYTHONPATH={os.environ.get('PYTHONPATH', '')}")
        for place in PLACES:
            results = [once(place, work, root) for _ in range(args.repeats)]
            seconds = [s for s, _ in results]
            print(f"{place:<11} median {statistics.median(seconds):.2f} s (max {max(seconds):.2f}), "
                  f"exit codes {sorted({c for _, c in results})}")


if __name__ == "__main__":
    main()
