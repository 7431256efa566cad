"""The diagnostics' precision on sane runs, and their recall on thread 004's collapse.

A grid of sane runs: each model with each task it serves and each `reg` preset at its
default λ, at regrun's default settings (the optimizer, epochs, batch size and λ of
conf/) on real MNIST cut to its first `--train-limit` training and `--test-limit` test
samples, which keeps the grid within minutes on two cores. None of them should end with a warning. Thread 004's
recipe (experiment=l1_all_params_collapse, on all of MNIST) must keep its warnings.

    python bench/diagnostics_precision.py --data-root ../shared/data

Results go to bench/results/diagnostics_precision.json (git ignores bench/results/).
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from regrun import api  # noqa: E402
from regrun.errors import RegrunError  # noqa: E402
from regrun.layout import COMPLETED  # noqa: E402

# (name, overrides): every model × task it serves, then every reg preset on its model.
SANE = [
    ("mlp · classification", ["model=mlp"]),
    ("cnn · classification", ["model=cnn"]),
    ("autoencoder · reconstruction", ["model=autoencoder", "task=reconstruction"]),
    ("mlp · reconstruction", ["model=mlp", "task=reconstruction"]),
    ("mlp · regression (toy_regression)", ["model=mlp", "dataset=toy_regression"]),
    ("mlp · classification (teacher)", ["model=mlp", "dataset=teacher"]),
    *[(f"mlp · reg={preset}", ["model=mlp", f"reg={preset}"])
      for preset in ("l1_activations", "l1_weights", "l2_weights", "elastic_net", "group_lasso")],
    ("cnn · reg=l1_weights", ["model=cnn", "reg=l1_weights"]),
    ("autoencoder · reg=l1_code", ["model=autoencoder", "task=reconstruction", "reg=l1_code"]),
]
RECALL = [("thread 004: experiment=l1_all_params_collapse", ["experiment=l1_all_params_collapse"])]


def warnings_of(overrides: list[str], data_root: str, limits: tuple[int, int] | None, out: Path) -> list[str] | str:
    """The diagnostics' codes of one run, or why it could not run."""
    data = [f"dataset.root={data_root}", "dataset.download=false"]
    if limits and not any(o.startswith("dataset=") for o in overrides):
        data += [f"dataset.train_limit={limits[0]}", f"dataset.test_limit={limits[1]}"]
    generated = any(o in ("dataset=toy_regression", "dataset=teacher") for o in overrides)
    try:
        summary = api.train([*overrides, *([] if generated else data), "trainer.device=cpu", f"hydra.run.dir={out}"])
    except RegrunError as err:
        return f"refused: {err}"
    if summary["status"] != COMPLETED:
        return f"{summary['status']}: {summary.get('error')}"
    return [w["code"] for w in summary.get("warnings", [])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--train-limit", type=int, default=10000)
    parser.add_argument("--test-limit", type=int, default=2000)
    args = parser.parse_args()
    table = Table("run", "kind", "warnings")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, grid, limit in (("sane", SANE, (args.train_limit, args.test_limit)), ("recall", RECALL, None)):
            for i, (name, overrides) in enumerate(grid):
                found = warnings_of(overrides, args.data_root, limit, Path(tmp) / f"{kind}{i}")
                results.append({"run": name, "kind": kind, "overrides": overrides, "warnings": found})
                table.add_row(name, kind, found if isinstance(found, str) else ", ".join(found) or "none")
    sane = [r for r in results if r["kind"] == "sane" and isinstance(r["warnings"], list)]
    quiet = sum(not r["warnings"] for r in sane)
    out = ROOT / "bench" / "results" / "diagnostics_precision.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    Console(width=max(Console().width, 120)).print(table)
    print(f"sane runs without a warning: {quiet} of {len(sane)}; written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
