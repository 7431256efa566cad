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


def test_finetuned_rows_are_a_dashed_curve_beside_their_configs(tmp_path: Path) -> None:
    runs = pruned_sweep(tmp_path, {0.0: [0.97, 0.8, 0.2], 1e-3: [0.96, 0.9, 0.5]})
    for run, tuned in zip(runs, ([0.95, 0.9], [0.96, 0.93])):
        rows = json.loads((run.path / "prune.json").read_text())
        for row, acc in zip(rows[1:], tuned):
            row |= {"finetune_epochs": 2, "finetuned_test_acc": acc, "finetuned_sparsity": row["sparsity"]}
        (run.path / "prune.json").write_text(json.dumps(rows))
    runs = find_runs([tmp_path])
    assert runs[0].final["prune90_finetuned_test_acc"] == 0.9 and runs[0].final["prune90_test_acc"] == 0.2
    fig = draw_pruning(runs, "test_acc", differing_keys(runs))
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["λ=0", "λ=0.001", "λ=0, then fine-tuned 2 epochs", "λ=0.001, then fine-tuned 2 epochs"]
    assert "(dashed: then fine-tuned 2 epochs, the zeroed weights held at 0)" in fig._suptitle.get_text()
    dashed = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == "--"]
    assert [list(line.get_ydata()) for line in dashed] == [[0.95, 0.9], [0.96, 0.93]]
