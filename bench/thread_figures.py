"""Each thread's preset run as its thread runs it, regrun's figures beside the ones the
thread printed (where it printed any). The README and the docs quote this file's output.

    python bench/thread_figures.py --data-root ../shared/data

Thread 004 prints "Loss after mini-batch 500: L (of which P L1 loss)" once per epoch;
regrun's figures are each epoch's mean training loss and L1 term (metrics.csv), which on
the plateau of epochs 3 to 5 is what a minibatch late in the epoch shows. The other threads
print no figures: their rows give regrun's final figures. Results go to
docs/results/thread_figures.json, from which the threads tutorial's table is rendered
(docs/hooks/reference.py); `--presets` reruns some of them and keeps the others' rows.
"""

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from regrun import api  # noqa: E402
from regrun.layout import EPOCH, METRICS, PENALTY_TOTAL, TOTAL_LOSS, split_figure  # noqa: E402

TEST = split_figure("test", "")
HEADLINES = tuple(split_figure("test", f) for f in ("acc", "r2", "psnr"))  # the tasks' headline figures, shown in the table
# Presets on generated data (dataset=teacher, toy_regression) take no data root.
GENERATED = {"l1_and_l2_norm_two_layers", "l1_relu_outputs_hook", "per_layer_decay_regression"}
# preset → (thread, {epoch: (total loss, L1 term)} as the thread printed them)
THREADS: dict[str, tuple[str, dict[int, tuple[float, float]]]] = {
    "l1_and_l2_norm_two_layers": ("000", {}),
    "l1_relu_outputs_hook": ("001", {}),
    "sparse_conv_autoencoder": ("002", {}),
    "per_layer_decay_regression": ("003", {}),
    "l1_all_params_collapse": ("004", {3: (2.94135, 0.63876), 4: (2.94091, 0.63833), 5: (2.94062, 0.63803)}),
}


def run_preset(preset: str, data_root: str, out: Path) -> tuple[list[dict[str, str]], list[str]]:
    """Train the preset as it stands; its metrics.csv rows and its diagnostics' codes."""
    root = [] if preset in GENERATED else [f"dataset.root={data_root}"]
    summary = api.train([f"experiment={preset}", *root, f"hydra.run.dir={out / preset}"])
    with open(Path(summary["run_dir"]) / METRICS) as f:
        return list(csv.DictReader(f)), [w["code"] for w in summary.get("warnings", [])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--presets", nargs="*", default=list(THREADS))
    args = parser.parse_args()
    out = ROOT / "docs" / "results" / "thread_figures.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    table = Table("thread", "preset", EPOCH, "regrun loss", "regrun penalty", "thread loss", "thread penalty", "test")
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            thread, printed = THREADS[preset]
            rows, warnings = run_preset(preset, args.data_root, Path(tmp))
            results[preset] = {"thread": thread, "warnings": warnings, "epochs": [
                {EPOCH: int(r[EPOCH]), "loss": float(r[TOTAL_LOSS]), "penalty": float(r[PENALTY_TOTAL]),
                 "test": {k: float(v) for k, v in r.items() if k.startswith(TEST) and v}}
                for r in rows], "thread_printed": {str(e): {"loss": loss, "l1": l1} for e, (loss, l1) in printed.items()}}
            shown = [r for r in results[preset]["epochs"] if r[EPOCH] in printed] or results[preset]["epochs"][-1:]
            for r in shown:
                loss, l1 = printed.get(r[EPOCH], (None, None))
                headline = next(k for k in (*HEADLINES, split_figure("test", "loss")) if k in r["test"])
                test = f"{headline.removeprefix(TEST)} {r['test'][headline]:.4g}"
                table.add_row(thread, preset, str(r[EPOCH]), f"{r['loss']:.4f}", f"{r['penalty']:.4f}",
                              "" if loss is None else f"{loss:.4f}", "" if l1 is None else f"{l1:.4f}", test)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    Console(width=max(Console().width, 120)).print(table)  # readable when piped to a file
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
