"""`regrun prune` on trained runs: the pruned model's figures against weights zeroed by hand,
the sensitivity rows, the at-end option, compare's columns and the curves' plot."""

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from regrun.analysis.compare import compare_runs
from regrun.analysis.prune_plots import pruning_curves
from regrun.analysis.runs import find_runs
from regrun.cli import compare, prune
from regrun.components.datasets import load_data
from regrun.components.models import build_model
from regrun.jobs.run import run

# Four classes of a random linear teacher, a small MLP, a few epochs: accuracy well below 1
# and falling as weights are removed, so that the figures can be told apart.
TEACHER = ("dataset=teacher", "dataset.classes=4", "dataset.features=16", "dataset.train_size=2000",
           "dataset.test_size=300", "model.hidden=[32,16]", "trainer.epochs=4", "optimizer.lr=0.01")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A completed run of the teacher MLP (its config composed from the real conf/)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from regrun.config import conf_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["trainer.device=cpu", "trainer.batch_size=32", *TEACHER])
    out = tmp_path_factory.mktemp("runs") / "mlp"
    assert run(OmegaConf.to_container(cfg, resolve=True), out)["status"] == "completed"
    return out


def hand_pruned(run_dir: Path, level: float) -> tuple[float, float, float]:
    """(accuracy, mean cross-entropy, zero fraction) on the test set of the run's model with
    its `level` smallest-magnitude Linear weights, over all layers together, set to zero here."""
    cfg = json.loads((run_dir / "config.json").read_text())
    data = load_data(cfg["dataset"], torch.device("cpu"))
    model = build_model(cfg["model"], tuple(data.test.x.shape[1:]), 4)
    model.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    magnitudes = torch.cat([w.detach().abs().flatten() for w in weights]).sort().values
    count = round(level * len(magnitudes))
    threshold = magnitudes[count - 1]
    assert magnitudes[count] > threshold  # no tie at the threshold: the `count` smallest are well defined
    with torch.no_grad():
        for w in weights:
            w[w.abs() <= threshold] = 0.0
        assert sum(int((w == 0).sum()) for w in weights) == count
        logits = model.eval()(data.test.x)
    accuracy = (logits.argmax(1) == data.test.y).double().mean().item()
    return accuracy, F.cross_entropy(logits, data.test.y).item(), count / len(magnitudes)


def rows_by(run_dir: Path) -> dict[tuple[str, float], dict]:
    return {(row["scope"], row["level"]): row for row in json.loads((run_dir / "prune.json").read_text())}


def test_the_global_90_percent_row_is_the_model_with_its_smallest_90_percent_zeroed_by_hand(
        trained: Path, capsys: pytest.CaptureFixture) -> None:
    assert prune.main([str(trained)]) == 0
    rows = rows_by(trained)
    accuracy, loss, zeros = hand_pruned(trained, 0.9)
    row = rows["global", 0.9]
    assert row["test_acc"] == pytest.approx(accuracy, abs=1e-6)
    assert row["test_loss"] == pytest.approx(loss, rel=1e-5)
    assert row["sparsity"] == pytest.approx(zeros, abs=1e-12)
    as_trained = rows["global", 0.0]["test_acc"]
    summary = json.loads((trained / "summary.json").read_text())
    assert as_trained == summary["final"]["test_acc"] and accuracy < as_trained - 0.1  # pruning cost something
    # the sensitivity analysis: every Linear layer alone at every default level
    levels = [0.0, 0.5, 0.7, 0.8, 0.9, 0.95]
    assert sorted(rows) == sorted((scope, level) for scope in ("global", "fc1", "fc2", "head") for level in levels)
    for scope in ("fc1", "fc2", "head"):
        assert rows[scope, 0.95]["sparsity"] == pytest.approx(0.95, abs=0.02)  # of that layer's own weights
    out = capsys.readouterr().out
    assert "global" in out and "fc2" in out and "prune.json written" in out


def test_levels_and_selection_from_the_command_line(trained: Path, tmp_path: Path) -> None:
    assert prune.main([str(trained), "--levels", "0.6,0.3", "--layers", "fc*", "--no-per-layer"]) == 0
    rows = rows_by(trained)
    assert sorted(rows) == [("global", 0.0), ("global", 0.3), ("global", 0.6)]
    fc = [w for name, w in torch.load(trained / "model.pt", weights_only=True).items()
          if name in ("fc1.weight", "fc2.weight")]
    assert rows["global", 0.6]["sparsity"] == pytest.approx(round(0.6 * sum(w.numel() for w in fc)) /
                                                            sum(w.numel() for w in fc))


@pytest.mark.parametrize(("args", "message"), [
    (["--levels", "0.5,1.5"], "prune.levels must be"),
    (["--levels", "half"], "give fractions separated by commas"),
    (["--layers", "conv*"], "prune.layers: 'conv*' matches no module"),
    (["--types", "Linaer"], "unknown module type 'Linaer'"),
])
def test_bad_options_are_one_line_exit_2_and_write_nothing(trained: Path, args: list[str], message: str,
                                                            capsys: pytest.CaptureFixture) -> None:
    (trained / "prune.json").unlink(missing_ok=True)
    assert prune.main([str(trained), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (trained / "prune.json").exists()


def test_a_run_that_did_not_complete_is_skipped_and_alone_refused(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "killed"
    (folder / ".hydra").mkdir(parents=True)
    assert prune.main([str(folder)]) == 2
    err = capsys.readouterr().err
    assert "skipped (incomplete" in err and "no completed run under" in err


def test_at_end_a_sweep_is_pruned_read_by_compare_and_plotted(make_cfg: Callable[..., dict], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    sweep = tmp_path / "sweep"
    for job, lam in enumerate((0.0, 1e-3)):
        cfg = make_cfg(*TEACHER, "reg=l1_weights", f"reg.targets.l1_weights.lambda={lam}", "prune.at_end=true",
                       "prune.levels=[0.5,0.9]")
        run(cfg, sweep / str(job))
    rows = rows_by(sweep / "0")
    assert rows["global", 0.9]["test_acc"] == pytest.approx(hand_pruned(sweep / "0", 0.9)[0], abs=1e-6)
    runs = find_runs([sweep])
    comparison = compare_runs(runs)
    assert "prune90_test_acc" in comparison.figure_keys and "prune50_test_acc" in comparison.figure_keys
    assert [row.figures["prune90_test_acc"].value for row in comparison.rows] == \
        [rows_by(sweep / str(job))["global", 0.9]["test_acc"] for job in (0, 1)]
    curves = pruning_curves(runs, "test_acc", ["reg.targets.l1_weights.lambda"])
    assert [(c.label, c.scope) for c in curves][:2] == [("λ=0", "global"), ("λ=0", "fc1")]
    assert curves[0].values == [rows[("global", level)]["test_acc"] for level in (0.0, 0.5, 0.9)]
    capsys.readouterr()
    assert compare.main([str(sweep), "--plot", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p_prune.png").stat().st_size > 10_000
    assert "pruning curves written to" in capsys.readouterr().err


def test_finetuning_holds_the_pruned_weights_at_exactly_zero_while_the_others_train(trained: Path) -> None:
    from regrun.jobs.pruning import finetune_pruned, pruned_tensors
    from regrun.jobs.run import build, training_data, training_of
    from regrun.measure.pruning import global_masks
    from regrun.rundir.resume import read_config

    setup = build(read_config(trained))
    setup.model.load_state_dict(torch.load(trained / "model.pt", weights_only=True))
    data = training_data(setup)
    tensors = pruned_tensors(setup.model, setup.config.prune)
    before = {name: t.detach().clone() for name, t in tensors.items()}
    masks = global_masks(tensors, 0.9)
    total = sum(t.numel() for t in tensors.values())
    assert sum(int(m.sum()) for m in masks.values()) == round(0.9 * total)
    figures = finetune_pruned(setup.model, masks, tensors, setup.task, data,
                              dataclasses.replace(setup.settings, epochs=2), training_of(setup))
    assert figures is not None and set(figures) == {"loss", "acc"}
    for name, t in tensors.items():
        assert (t[masks[name]] == 0).all()  # after every step of AdamW with weight decay, still exactly 0
        kept = ~masks[name]
        assert not torch.equal(t[kept], before[name][kept])  # the rest trained
    zeros = sum(int((t == 0).sum()) for t in tensors.values())
    assert zeros == round(0.9 * total)  # the sparsity is the level's, no more, no less


def test_regrun_prune_finetunes_each_global_level_and_compare_reads_the_recovered_figure(
        trained: Path, capsys: pytest.CaptureFixture) -> None:
    model_file = (trained / "model.pt").read_bytes()
    assert prune.main([str(trained), "--levels", "0.5,0.9", "--finetune-epochs", "2"]) == 0
    rows = rows_by(trained)
    accuracy, _, zeros = hand_pruned(trained, 0.9)
    tuned = rows["global", 0.9]
    assert tuned["test_acc"] == pytest.approx(accuracy, abs=1e-6)  # the pruned figure as before
    assert tuned["finetune_epochs"] == 2 and tuned["finetuned_sparsity"] == pytest.approx(zeros, abs=1e-12)
    assert tuned["finetuned_test_acc"] > tuned["test_acc"] + 0.05  # fine-tuning recovers most of the loss
    assert "finetuned_test_acc" not in rows["global", 0.0] and "finetuned_test_acc" not in rows["fc1", 0.9]
    assert (trained / "model.pt").read_bytes() == model_file  # the run's own model is left as it was
    out = capsys.readouterr().out
    assert "global, fine-tuned 2 epochs" in out
    comparison = compare_runs(find_runs([trained]))
    assert comparison.rows[0].figures["prune90_finetuned_test_acc"].value == tuned["finetuned_test_acc"]
    assert prune.main([str(trained), "--finetune-epochs", "-1"]) == 2
    assert "prune.finetune_epochs" in capsys.readouterr().err
