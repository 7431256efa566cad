"""The pruning curves' figure on hand-written prune.json files: what its axes say."""

import json
from pathlib import Path

from fake_runs import config, final, write_run

from regrun.analysis.prune_plots import draw_pruning
from regrun.analysis.runs import differing_keys, find_runs


def pruned_sweep(root: Path, accuracies: dict[float, list[float]]) -> list:
    """Runs whose prune.json holds the global rows at levels 0, 0.5 and 0.9 with these accuracies."""
    for lam, accs in accuracies.items():
        path = write_run(root / f"{lam:g}", config(lam=lam), final(accs[0], 0.5, lam))
        rows = [{"scope": "global", "level": level, "sparsity": level, "test_acc": acc, "test_loss": 0.3}
                for level, acc in zip((0.0, 0.5, 0.9), accs)]
        (path / "prune.json").write_text(json.dumps(rows))
    return find_runs([root])


def test_a_zoomed_accuracy_axis_says_so_and_a_full_one_does_not(tmp_path: Path) -> None:
    runs = pruned_sweep(tmp_path / "narrow", {0.0: [0.97, 0.965, 0.95], 1e-3: [0.96, 0.96, 0.955]})
    fig = draw_pruning(runs, "test_acc", differing_keys(runs))
    label = fig.axes[0].get_ylabel()
    lo, hi = fig.axes[0].get_ylim()
    assert label.startswith("test accuracy") and f"axis zoomed to {lo:.3g}–{hi:.3g} of 0–1" in label
    runs = pruned_sweep(tmp_path / "wide", {0.0: [0.97, 0.8, 0.2], 1e-3: [0.96, 0.9, 0.5]})
    fig = draw_pruning(runs, "test_acc", differing_keys(runs))
    assert "zoomed" not in fig.axes[0].get_ylabel()
