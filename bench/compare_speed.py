"""Wall time of `regrun compare` over many runs: 100, 400, 1000 run directories.

The runs are copies of one real run directory (a one-epoch run on a slice of real MNIST,
made by this script with the real `regrun` command, or --template RUN_DIR), each given its
own λ and seed in every file that holds the config (config.json, summary.json,
.hydra/config.yaml, .hydra/overrides.yaml) and its own job number (.hydra/hydra.yaml), as a
sweep of λ × seed lays them out. checkpoint.pt and model.pt are left out: compare never
reads them. Each figure is the wall time of the whole command, Python start-up included,
as a person waits for it:

    regrun compare ROOT --format csv            the table (CSV, so that the terminal's width does not matter)
    regrun compare ROOT --format csv --group-seeds
    regrun compare ROOT --format csv --plot P   the table and the PNG

Run it from the repository root:

    .venv/bin/python bench/compare_speed.py --data-root ../shared/data
    .venv/bin/python bench/compare_speed.py --template outputs/runs/DATE/TIME --runs 100 1000

Results go to bench/results/compare_speed.json (git-ignored), the copies to
bench/results/compare_speed_runs/ (replaced on every run).
"""

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from regrun.layout import (  # noqa: E402
    CHECKPOINT,
    CONFIG,
    HYDRA,
    HYDRA_CONFIG,
    HYDRA_OVERRIDES,
    HYDRA_SETTINGS,
    MODEL,
    SEED,
    SUMMARY,
)

REGRUN = Path(sys.executable).parent / "regrun"
LAMBDAS = (0.0, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
TARGET = "l1_activations"
LAM_KEY = f"reg.targets.{TARGET}.lambda"
COMMANDS = {"table": [], "--group-seeds": ["--group-seeds"], "--plot": ["--plot", "{plot}"]}
SKIPPED = (CHECKPOINT, MODEL)


def parse_args() -> argparse.Namespace:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data-root", default="../shared/data", help="folder holding MNIST/raw/ (default %(default)s)")
    parser.add_argument("--template", type=Path, help="a completed run directory of reg=l1_activations to copy")
    parser.add_argument("--runs", type=int, nargs="+", default=[100, 400, 1000], help="run counts (default %(default)s)")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/compare_speed.json")
    return parser.parse_args()


def make_template(data_root: Path, where: Path) -> Path:
    """One real completed run: L1 on the activations, one epoch on 2000 MNIST samples."""
    out = where / "template"
    argv = [str(REGRUN), "reg=l1_activations", "trainer.epochs=1", "dataset.train_limit=2000",
            "dataset.test_limit=1000", f"dataset.root={data_root}", f"hydra.run.dir={out}"]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"compare_speed: the template run failed:\n{proc.stderr}")
    return out


def set_point(cfg: dict, lam: float, seed: int) -> None:
    """Give a run's config its λ and seed."""
    cfg[SEED], cfg["reg"]["targets"][TARGET]["lambda"] = seed, lam


def clone(template: Path, dest: Path, job: int, lam: float, seed: int) -> None:
    """A copy of the template run as job `job` of a λ × seed sweep."""
    shutil.copytree(template, dest, ignore=shutil.ignore_patterns(*SKIPPED))
    for name in (CONFIG, SUMMARY):
        data = json.loads((dest / name).read_text())
        set_point(data.get("config", data), lam, seed)
        (dest / name).write_text(json.dumps(data))
    hydra = dest / HYDRA
    cfg = yaml.safe_load((hydra / HYDRA_CONFIG).read_text())
    set_point(cfg, lam, seed)
    (hydra / HYDRA_CONFIG).write_text(yaml.safe_dump(cfg))
    (hydra / HYDRA_OVERRIDES).write_text(yaml.safe_dump([f"{LAM_KEY}={lam}", f"{SEED}={seed}"]))
    meta = yaml.safe_load((hydra / HYDRA_SETTINGS).read_text())
    meta["hydra"]["job"]["num"] = job
    (hydra / HYDRA_SETTINGS).write_text(yaml.safe_dump(meta))


def make_sweep(template: Path, root: Path, n: int) -> None:
    """`n` runs: the λ values of LAMBDAS, each over n / len(LAMBDAS) seeds."""
    root.mkdir(parents=True)
    for job in range(n):
        clone(template, root / str(job), job, LAMBDAS[job % len(LAMBDAS)], job // len(LAMBDAS))


def time_command(root: Path, extra: list[str]) -> float:
    """Wall time of one `regrun compare` over `root`; exits if the command fails."""
    argv = [str(REGRUN), "compare", str(root), "--format", "csv",
            *(a.format(plot=root.parent / f"{root.name}.png") for a in extra)]
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"compare_speed: {' '.join(argv)} failed:\n{proc.stderr}")
    return seconds


def main() -> int:
    """Make the runs, time each command on each count, print the table, write the JSON."""
    args = parse_args()
    work = args.out.parent / "compare_speed_runs"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    template = args.template or make_template(Path(args.data_root).resolve(), work)
    results: dict[str, dict[str, float]] = {}
    for n in args.runs:
        root = work / f"sweep_{n}"
        make_sweep(template, root, n)
        results[str(n)] = {name: time_command(root, extra) for name, extra in COMMANDS.items()}
    table = Table(title="`regrun compare` wall time, seconds (Python start-up included)", title_justify="left")
    table.add_column("runs", justify="right")
    for name in COMMANDS:
        table.add_column(name, justify="right")
    for n, row in results.items():
        table.add_row(n, *(f"{row[name]:.2f}" for name in COMMANDS))
    Console().print(table)
    args.out.write_text(json.dumps({"command": [sys.executable, *sys.argv], "template": str(template),
                                    "seconds": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
