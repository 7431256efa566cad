"""Wall time of λ sweeps on the fused launcher, against the basic launcher, joblib and one run.

Two models, each swept over 8 λ values (one epoch of real MNIST each), and over the same
8 λ × 3 seeds:

    thread-004 MLP   784-64-32-10, AdamW lr 1e-4, L1 on all parameters, batch 64
                     (model.hidden=[64,32] optimizer.lr=1e-4 reg=l1_weights reg.targets.l1_weights.site=params)
    default MLP      784-256-128-10, AdamW lr 1e-3, L1 on the activations (reg=l1_activations)

Variants, each a whole `regrun` process (start-up, data, training, every job's files, the sweep
summary and its plot), the figure a person waits for:

    one      a single run of the same config (λ = 1e-4, seed 0): the yardstick
    basic    Hydra's basic launcher: the jobs one after another in one process
    joblib   hydra/launcher=joblib (n_jobs=-1: one worker per CPU)
    fused    hydra/launcher=fused: the whole grid as one vectorized model

With --repeats N each (model, grid) runs its variants N times in alternating order (forward,
then reversed), so a drift in a shared machine's speed hits them alike; the table gives the
mean, and each variant's time as a multiple of one run's. On Linux the CPU time that other
processes took during each command is recorded (`other_cpu_s`): a noisy machine shows there.

    .venv/bin/python bench/fused_speed.py --data-root ../shared/data --repeats 2
    .venv/bin/python bench/fused_speed.py --models thread-004 --grids 8 --variants one fused basic --repeats 3

Results go to bench/results/fused_speed.json (git-ignored), the sweeps to
bench/results/fused_speed_runs/ (replaced on every run).
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sweep_speed import REGRUN, REPO, children_cpu_s, from_repo, machine_busy_s

from regrun.layout import COMPLETED, SUMMARY

LAMBDAS = "0,1e-5,3e-5,1e-4,3e-4,1e-3,3e-3,1e-2"
MODELS = {
    "thread-004": ["model.hidden=[64,32]", "optimizer.lr=1e-4", "reg=l1_weights", "reg.targets.l1_weights.site=params"],
    "default": ["reg=l1_activations"],
}
TARGET = {"thread-004": "l1_weights", "default": "l1_activations"}
GRIDS = {"8": [], "8x3": ["seed=0,1,2"]}
VARIANTS = {"one": None, "basic": [], "joblib": ["hydra/launcher=joblib"], "fused": ["hydra/launcher=fused"]}


def parse_args() -> argparse.Namespace:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data-root", default="../shared/data", help="folder holding MNIST/raw/ (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per variant, alternating order (default %(default)s)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--grids", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", default="bench/results/fused_speed.json", help="results JSON (default %(default)s)")
    return parser.parse_args()


def command(model: str, grid: str, variant: str, root: Path, out: Path) -> list[str]:
    """The `regrun` command line of one variant."""
    common = [*MODELS[model], "trainer.epochs=1", f"dataset.root={root}"]
    if VARIANTS[variant] is None:
        return [str(REGRUN), *common, f"reg.targets.{TARGET[model]}.lambda=1e-4", f"hydra.run.dir={out}"]
    return [str(REGRUN), "-m", *common, f"reg.targets.{TARGET[model]}.lambda={LAMBDAS}", *GRIDS[grid],
            *VARIANTS[variant], f"hydra.sweep.dir={out}"]


def timed(argv: list[str], out: Path) -> dict:
    """Run one command; its wall time, the other processes' CPU time meanwhile, its jobs' statuses."""
    busy, own = machine_busy_s(), children_cpu_s()
    started = time.perf_counter()
    with open(out.with_suffix(".log"), "w") as log:
        code = subprocess.run(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - started
    after = machine_busy_s()
    others = None if busy is None or after is None else max(0.0, after - busy - (children_cpu_s() - own))
    summaries = [out / SUMMARY] if (out / SUMMARY).exists() else sorted(out.glob(f"*/{SUMMARY}"))
    statuses = [json.loads(p.read_text())["status"] for p in summaries]
    if code != 0 or not statuses or any(s != COMPLETED for s in statuses):
        sys.exit(f"fused_speed: {' '.join(argv)} did not complete (exit {code}); see {out.with_suffix('.log')}")
    return {"wall_s": wall, "other_cpu_s": others, "jobs": len(statuses)}


def main() -> None:
    """Time every (model, grid, variant), print the table, write the JSON."""
    args = parse_args()
    root, out_json = from_repo(args.data_root), from_repo(args.out)
    runs_dir = out_json.parent / "fused_speed_runs"
    shutil.rmtree(runs_dir, ignore_errors=True)
    runs_dir.mkdir(parents=True)
    console = Console()
    results = []
    for model in args.models:
        for grid in args.grids:
            times: dict[str, list[dict]] = {v: [] for v in args.variants}
            for repeat in range(args.repeats):
                order = args.variants if repeat % 2 == 0 else args.variants[::-1]
                for variant in order:
                    out = runs_dir / f"{model}_{grid}_{variant}_{repeat + 1}"
                    times[variant].append(timed(command(model, grid, variant, root, out), out))
                    console.print(f"  {model} {grid} {variant}: {times[variant][-1]['wall_s']:.1f} s")
            results.append({"model": model, "grid": grid, "times": times})
    show(console, results, args.repeats)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps({"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                    "argv": sys.argv, "results": results}, indent=2) + "\n")
    console.print(f"results: {out_json}")


def show(console: Console, results: list[dict], repeats: int) -> None:
    """One row per (model, grid, variant): mean wall time, its range, and the multiple of one run."""
    table = Table(title=f"whole-process wall time, 1 epoch of MNIST per run, mean of {repeats}", title_justify="left")
    for column in ("model", "grid", "variant", "jobs", "wall s", "× one run", "other CPU s"):
        table.add_column(column, justify="left" if column in ("model", "grid", "variant") else "right")
    for result in results:
        times = result["times"]
        one = statistics.fmean(t["wall_s"] for t in times["one"]) if times.get("one") else None
        for variant, runs in times.items():
            walls = [t["wall_s"] for t in runs]
            mean = statistics.fmean(walls)
            spread = f" ({min(walls):.1f}–{max(walls):.1f})" if len(walls) > 1 else ""
            others = [t["other_cpu_s"] for t in runs if t["other_cpu_s"] is not None]
            table.add_row(result["model"], result["grid"], variant, str(runs[0]["jobs"]), f"{mean:.1f}{spread}",
                          f"{mean / one:.2f}×" if one else "", f"{statistics.fmean(others):.0f}" if others else "")
    console.print(table)


if __name__ == "__main__":
    main()
