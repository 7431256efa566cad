"""Wall time of one λ sweep: Hydra's basic launcher against the joblib launcher.

The sweep is the README's, three runs of one epoch of real MNIST:

    regrun -m reg=l1_activations reg.targets.l1_activations.lambda=0,1e-4,1e-3 trainer.epochs=1 dataset.root=../shared/data

run as a whole through the real `regrun` command (a subprocess; the venv's own, which is
this checkout's after `make install`), once per variant:

basic       Hydra's basic launcher: the jobs one after another in the one process, each
            with torch's default thread count (one per CPU).
joblib      hydra/launcher=joblib, n_jobs=-1 (the plugin's default: one worker per CPU).
            loky starts its workers with OMP_NUM_THREADS = cpu_count // n_jobs, so on a
            2-core machine two jobs run at once with one torch thread each, and the third
            follows on its own, still with one thread.
joblib n=3  hydra.launcher.n_jobs=3 (--n-jobs 3): one worker per job, all three at once,
            one thread each, so the cores are shared three ways but none idles at the end.

Each figure is the wall time of the whole command: Python and torch starting, the data
loading in every job, training, the sweep summary and its plot at the end. That is what a
person waits for. Each job's torch thread count (from its summary.json) is recorded too.
With --repeats N the variants run N times each, in alternating order (basic, joblib, ...,
then the reverse), so that a drift in the speed of a shared machine hits them alike.
The timing is only meaningful on an otherwise idle machine: on Linux the script counts the
CPU time the machine spent busy during each sweep beyond what the sweep's own processes
used, and warns when other work took a noticeable share of the CPUs.

Run it from the repository root:

    make bench-sweep                                     # python bench/sweep_speed.py --data-root ../shared/data
    .venv/bin/python bench/sweep_speed.py --repeats 3 --n-jobs -1 2 3

Relative paths given to --data-root and --out are taken from the repository root. The
results go to bench/results/sweep_speed.json (git-ignored), the sweeps' run directories to
bench/results/sweep_speed_runs/ (replaced on every run), each sweep's output to a .log
file beside its directory.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from regrun.layout import COMPLETED, SUMMARY, split_figure  # noqa: E402

REGRUN = Path(sys.executable).parent / "regrun"
LAMBDAS = "0,1e-4,1e-3"  # the sweep; --lambdas times another
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Other processes' CPU time during a sweep, as a share of all CPUs' time, above which the
# sweep's wall time is not the launcher's own.
BUSY_SHARE = 0.05


@dataclass
class Variant:
    """One way to run the sweep, and what each of its runs measured."""

    name: str
    overrides: list[str]
    wall_s: list[float] = field(default_factory=list)
    other_cpu_s: list[float | None] = field(default_factory=list)  # per sweep: CPU time of other processes
    jobs: list[list[dict[str, Any]]] = field(default_factory=list)  # per repeat: each job's status and figures

    @property
    def mean_s(self) -> float:
        """Mean wall time of the whole sweep."""
        return statistics.fmean(self.wall_s)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data-root", default="../shared/data",
                        help="folder holding MNIST/raw/ (relative: from the repository root; default %(default)s)")
    parser.add_argument("--epochs", type=int, default=1, help="trainer.epochs of each run (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="sweeps per variant, in alternating order (default %(default)s)")
    parser.add_argument("--lambdas", default=LAMBDAS, help="the λ values, one job each (default %(default)s)")
    parser.add_argument("--n-jobs", type=int, nargs="+", default=[-1, 3], metavar="N",
                        help="hydra.launcher.n_jobs of each joblib variant (default: %(default)s)")
    parser.add_argument("--out", default="bench/results/sweep_speed.json",
                        help="results JSON (relative: from the repository root; default %(default)s)")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.repeats < 1:
        parser.error("--epochs and --repeats must be at least 1")
    if 0 in args.n_jobs:
        parser.error("--n-jobs: joblib takes a positive count of workers, or -1 for one per CPU (-2: all but one, ...)")
    return args


def from_repo(path: str) -> Path:
    """`path` itself when absolute, else taken from the repository root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (REPO / p).resolve()


def variants(n_jobs: Sequence[int]) -> list[Variant]:
    """The basic launcher, then joblib at each worker count."""
    joblib = [Variant(f"joblib n_jobs={n}", ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={n}"]) for n in n_jobs]
    return [Variant("basic", []), *joblib]


def sweep(lambdas: str, epochs: int) -> list[str]:
    """The README's λ sweep: L1 on the activations, one job per λ."""
    return ["-m", "reg=l1_activations", f"reg.targets.l1_activations.lambda={lambdas}", f"trainer.epochs={epochs}"]


def command(variant: Variant, root: Path, settings: list[str], sweep_dir: Path) -> list[str]:
    """The sweep with the variant's launcher, writing into `sweep_dir`."""
    return [str(REGRUN), *settings, f"dataset.root={root}", *variant.overrides, f"hydra.sweep.dir={sweep_dir}"]


def run_sweep(variant: Variant, root: Path, settings: list[str], sweep_dir: Path) -> None:
    """Time one whole sweep; record its wall time and its jobs, or exit naming its log."""
    log = sweep_dir.with_suffix(".log")
    with open(log, "w") as out:
        busy, own = machine_busy_s(), children_cpu_s()
        started = time.perf_counter()
        code = subprocess.run(command(variant, root, settings, sweep_dir), cwd=REPO, stdout=out,
                              stderr=subprocess.STDOUT).returncode
        seconds = time.perf_counter() - started
        after = machine_busy_s()
        others = None if busy is None or after is None else max(0.0, after - busy - (children_cpu_s() - own))
    jobs = read_jobs(sweep_dir)
    if code != 0 or any(job["status"] != COMPLETED for job in jobs):
        sys.exit(f"sweep_speed: the {variant.name} sweep did not complete (exit {code}); see {log}")
    variant.wall_s.append(seconds)
    variant.other_cpu_s.append(others)
    variant.jobs.append(jobs)


def machine_busy_s() -> float | None:
    """CPU seconds all CPUs have spent busy since boot (Linux /proc/stat; None elsewhere)."""
    try:
        ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle, iowait = ticks[3], ticks[4]
    return (sum(ticks[:8]) - idle - iowait) / os.sysconf("SC_CLK_TCK")  # steal counts: it is CPU others took


def children_cpu_s() -> float:
    """CPU seconds used by this script's finished subprocesses and theirs (the sweeps' workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def read_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """Each job's status, λ, final test accuracy and torch thread count, from its summary.json."""
    jobs = []
    for job in range(len(list(sweep_dir.glob("[0-9]*")))):
        path = sweep_dir / str(job) / SUMMARY
        summary = json.loads(path.read_text()) if path.exists() else {"status": "missing"}
        target = summary.get("config", {}).get("reg", {}).get("targets", {}).get("l1_activations", {})
        jobs.append({"job": job, "status": summary["status"], "lambda": target.get("lambda"),
                     "test_acc": summary.get("final", {}).get(split_figure("test", "acc")),
                     "torch_threads": summary.get("environment", {}).get("torch_threads")})
    return jobs


def time_all(all_variants: list[Variant], root: Path, settings: list[str], repeats: int, runs_dir: Path,
             console: Console) -> None:
    """Every variant `repeats` times, the order reversed on every other repeat."""
    for repeat in range(repeats):
        order = all_variants if repeat % 2 == 0 else all_variants[::-1]
        for variant in order:
            sweep_dir = runs_dir / f"{variant.name.replace(' n_jobs=', '_n')}_{repeat + 1}"
            run_sweep(variant, root, settings, sweep_dir)
            console.print(f"  {variant.name}: {variant.wall_s[-1]:.1f} s")


def threads(variant: Variant) -> str:
    """The torch thread counts its jobs ran with, e.g. '1' or '1, 2'."""
    return ", ".join(str(n) for n in sorted({job["torch_threads"] for jobs in variant.jobs for job in jobs}))


def show(console: Console, all_variants: Sequence[Variant], args: argparse.Namespace) -> None:
    """The timing table: wall time per sweep, and the speed-up over the basic launcher."""
    basic = all_variants[0]
    jobs = len(args.lambdas.split(","))
    title = (f"{jobs}-job λ sweep ({args.lambdas}), {args.epochs} epoch(s) of MNIST each, {os.cpu_count()} CPUs "
             f"(wall time of the whole `regrun -m`, mean of {args.repeats})")
    table = Table(title=title, title_justify="left")
    for column in ("launcher", "wall s", "speed-up over basic", "torch threads per job"):
        table.add_column(column, justify="left" if column == "launcher" else "right")
    for v in all_variants:
        spread = f" ({min(v.wall_s):.1f}–{max(v.wall_s):.1f})" if len(v.wall_s) > 1 else ""
        table.add_row(v.name, f"{v.mean_s:.1f}{spread}", f"{basic.mean_s / v.mean_s:.2f}×", threads(v))
    console.print(table)


def busy_sweeps(all_variants: Sequence[Variant]) -> list[str]:
    """The sweeps during which other processes took more than BUSY_SHARE of the CPUs."""
    cpus = os.cpu_count() or 1
    return [f"{v.name} #{i + 1}: {others:.0f} CPU-s of other work in {wall:.0f} s"
            for v in all_variants for i, (wall, others) in enumerate(zip(v.wall_s, v.other_cpu_s))
            if others is not None and others > BUSY_SHARE * wall * cpus]


def write_json(out: Path, args: argparse.Namespace, root: Path, all_variants: Sequence[Variant]) -> None:
    """Everything measured, with the settings and what the figures depend on, as one JSON file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv],
        "settings": {"data_root": str(root), "epochs": args.epochs, "repeats": args.repeats, "lambdas": args.lambdas,
                     "sweep": sweep(args.lambdas, args.epochs)},
        "environment": {"cpu_count": os.cpu_count(), "python": sys.version.split()[0],
                        "busy_sweeps": busy_sweeps(all_variants),
                        "thread_vars": {var: os.environ.get(var) for var in THREAD_VARS}},
        "variants": {v.name: {**asdict(v), "mean_s": v.mean_s,
                              "command": command(v, root, sweep(args.lambdas, args.epochs), Path("SWEEP_DIR"))}
                     for v in all_variants},
    }
    out.write_text(json.dumps(report, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Time every variant, print the table, write the JSON."""
    args = parse_args(argv)
    root, out = from_repo(args.data_root), from_repo(args.out)
    if not (root / "MNIST" / "raw").is_dir():
        sys.exit(f"sweep_speed: {root / 'MNIST' / 'raw'} does not exist; pass --data-root DIR with DIR/MNIST/raw/ "
                 f"holding torchvision's MNIST IDX files")
    runs_dir = out.parent / "sweep_speed_runs"
    shutil.rmtree(runs_dir, ignore_errors=True)  # the previous run's sweeps: this script's own output
    runs_dir.mkdir(parents=True)
    console = Console()
    all_variants = variants(args.n_jobs)
    console.print(f"{len(all_variants)} variants × {args.repeats} repeat(s) of the λ={args.lambdas} sweep on {root}")
    time_all(all_variants, root, sweep(args.lambdas, args.epochs), args.repeats, runs_dir, console)
    show(console, all_variants, args)
    for busy in busy_sweeps(all_variants):
        console.print(f"[bold yellow]warning:[/] {busy}: the machine was shared, so that time is not the launcher's own")
    write_json(out, args, root, all_variants)
    console.print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
