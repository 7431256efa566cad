"""`regrun compare` on hand-written run directories whose figures are checked by hand."""

import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from fake_runs import config, final, write_run
from mixed_runs import write_mixed_runs

from regrun.analysis.compare import compare_runs, display_rows, figure_columns, table_columns
from regrun.analysis.plots import default_x, lambda_key, lambda_series, pareto_front, tradeoff_points
from regrun.analysis.runs import differing_keys, find_runs, read_run, short_names
from regrun.cli.compare import main
from regrun.config import flatten

LAM = "reg.targets.l1_act.lambda"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def compare(*args: str | Path, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def as_json(*args: str | Path, capsys: pytest.CaptureFixture) -> list[dict]:
    code, out, err = compare(*args, "--format", "json", capsys=capsys)
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A λ sweep whose job folders sort as text (0, 1, 10, 2) unlike their numbers."""
    root = tmp_path / "sweep"
    root.mkdir()
    (root / "multirun.yaml").write_text("hydra: {}\n")
    for job, lam, acc, sparsity in [(0, 0.0, 0.97, 0.50), (1, 1e-2, 0.80, 0.95), (2, 1e-3, 0.96, 0.85), (10, 1e-4, 0.97, 0.60)]:
        write_run(root / str(job), config(lam=lam), final(acc, sparsity, lam), overrides=[f"{LAM}={lam}"], job_num=job)
    return root


@pytest.fixture
def seeds(tmp_path: Path) -> Path:
    """Two λ, three seeds each."""
    figures = {1e-3: [(0.90, 0.5), (0.92, 0.6), (0.94, 0.7)], 1e-2: [(0.80, 0.9), (0.80, 0.9), (0.86, 0.9)]}
    for lam, runs in figures.items():
        for seed, (acc, sparsity) in enumerate(runs):
            write_run(tmp_path / f"lam{lam:g}_seed{seed}", config(lam=lam, seed=seed), final(acc, sparsity, lam))
    return tmp_path


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """One completed run next to an unfinished, a broken and a failed one."""
    write_run(tmp_path / "good", config(lam=1e-3), final(0.95, 0.8))
    write_run(tmp_path / "killed", config(lam=1e-2, epochs=5), status=None, metrics=[final(0.5, 0.9)])
    write_run(tmp_path / "garbled", config(lam=1e-1)).joinpath("summary.json").write_text('{"status": "compl')
    write_run(tmp_path / "failed", config(lam=-1.0), status="failed",
              error="reg.targets.l1_act.lambda must be a finite number ≥ 0, got -1.0")
    return tmp_path


def test_flatten_and_short_names() -> None:
    assert flatten({"seed": 0, "trainer": {"epochs": 2}, "model": {"hidden": [256, 128]}, "empty": {}}) == {
        "seed": 0, "trainer.epochs": 2, "model.hidden": [256, 128], "empty": {}}
    assert short_names(["reg.targets.a.lambda", "reg.targets.b.lambda", "seed", "trainer.epochs"]) == {
        "reg.targets.a.lambda": "a.lambda", "reg.targets.b.lambda": "b.lambda", "seed": "seed",
        "trainer.epochs": "trainer.epochs"}
    # "x.lambda" would also be the end of "a.x.lambda": the longer key keeps a third part
    assert short_names(["x.lambda", "a.x.lambda"]) == {"x.lambda": "x.lambda", "a.x.lambda": "a.x.lambda"}


def test_differing_keys_are_those_and_only_those(tmp_path: Path) -> None:
    two_targets = config(lam=1e-3, seed=1)
    two_targets["reg"]["targets"]["l2_w"] = {"site": "weights", "lambda": 1e-4}
    write_run(tmp_path / "a", config(lam=1e-3, seed=0), final(0.9, 0.5))
    write_run(tmp_path / "b", config(lam=1e-2, seed=0), final(0.9, 0.5))
    write_run(tmp_path / "c", two_targets, final(0.9, 0.5))
    write_run(tmp_path / "d", {}, status=None).joinpath(".hydra", "config.yaml").unlink()  # no config at all
    runs = find_runs([tmp_path])
    # d has no config: left out, or every key would differ
    assert differing_keys(runs) == ["seed", LAM, "reg.targets.l2_w.site", "reg.targets.l2_w.lambda"]


def test_find_runs_in_natural_order_without_descending_into_runs(sweep: Path, tmp_path: Path) -> None:
    write_run(sweep / "2" / "checkpoints" / "inner", config(), final(0.1, 0.1))  # inside a run: not a run of its own
    write_run(tmp_path / ".trash" / "old", config(), final(0.1, 0.1))  # hidden folders are skipped
    runs = find_runs([tmp_path, sweep / "0", sweep])  # overlapping paths: each run once
    assert [run.path.name for run in runs] == ["0", "1", "2", "10"]
    assert [run.job_num for run in runs] == [0, 1, 2, 10]
    assert runs[2].overrides == [f"{LAM}=0.001"]


def test_run_status_from_its_files(mixed: Path) -> None:
    runs = {run.path.name: run for run in find_runs([mixed])}
    assert {name: run.status for name, run in runs.items()} == {
        "failed": "failed", "garbled": "broken", "good": "completed", "killed": "incomplete"}
    assert runs["failed"].error.startswith("reg.targets.l1_act.lambda must be") and runs["failed"].final == {}
    assert runs["garbled"].error.startswith("summary.json unreadable: Unterminated string")
    assert runs["killed"].error == "no summary.json (still running, or killed); last metrics row: epoch 2 of 5"
    assert runs["killed"].metrics[0]["test_acc"] == 0.5  # its epochs are there for curves
    assert runs["killed"].final["test_acc"] == 0.5  # and its figures as they stand
    assert runs["killed"].targeted_modules == []  # no targets.json: nothing known to be penalized
    assert runs["garbled"].config["reg"]["targets"]["l1_act"]["lambda"] == 0.1  # from .hydra/config.yaml


def test_config_from_hydra_is_resolved_where_it_can_be(tmp_path: Path) -> None:
    write_run(tmp_path / "a", status=None).joinpath(".hydra", "config.yaml").write_text(
        "trainer: {epochs: 3}\ntotal: ${trainer.epochs}\nlam: 1e-4\n")
    write_run(tmp_path / "b", status=None).joinpath(".hydra", "config.yaml").write_text(
        "trainer: {epochs: 3}\ntotal: ${trainer.epochs}\nwhen: ${hydra:job.name}\n")
    assert read_run(tmp_path / "a").config == {"trainer": {"epochs": 3}, "total": 3, "lam": 1e-4}
    # ${hydra:...} resolves only inside a Hydra job: the whole config stays unresolved rather than lost
    assert read_run(tmp_path / "b").config["total"] == "${trainer.epochs}"


def test_table_columns_are_the_differing_keys_then_the_figures(sweep: Path, capsys: pytest.CaptureFixture) -> None:
    runs = find_runs([sweep])
    assert figure_columns(runs) == [
        "test_loss", "test_acc", "train_task_loss", "penalty.l1_act.raw", "penalty.l1_act.weighted",
        "sparsity.weights.zero_frac", "sparsity.weights.below_0.001", "sparsity.l1_act.zero_frac",
        "sparsity.act1.zero_frac"]  # act2 is not targeted: not a headline column
    records = as_json(sweep, capsys=capsys)
    assert list(records[0])[:5] == ["run", "path", LAM, "status", "error"]
    # sorted by λ as numbers (not as folder names or text)
    assert [(r["run"], r[LAM], r["test_acc"], r["sparsity.l1_act.zero_frac"]) for r in records] == [
        ("0", 0.0, 0.97, 0.50), ("10", 1e-4, 0.97, 0.60), ("2", 1e-3, 0.96, 0.85), ("1", 1e-2, 0.80, 0.95)]
    assert records[2]["penalty.l1_act.weighted"] == pytest.approx(1e-3 * 50)


def test_table_markdown_and_csv_show_the_same_rows(sweep: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = compare(sweep, capsys=capsys)
    assert code == 0
    assert "4 runs" in out and "l1_act." in out and "lambda" in out
    assert "trainer" not in out and "hidden" not in out  # equal in every run: not shown
    code, out, _ = compare(sweep, "--format", "markdown", "--sort", "test acc", capsys=capsys)
    lines = out.splitlines()
    assert lines[0].startswith("| run | l1_act.lambda | status | test loss | test acc | task loss | l1_act raw |")
    assert lines[1].startswith("| :--- | ---: | :--- | ---: |")
    assert lines[2].startswith("| 1 | 0.01 | completed | 0.5 | 0.8000 |")  # lowest accuracy first
    code, out, _ = compare(sweep, "--format", "csv", "--sort", "act1.zero_frac", "--desc", capsys=capsys)
    rows = out.splitlines()
    assert rows[0].startswith(f"run,path,{LAM},status,error,warnings,test_loss,test_acc,")
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2", "10", "0"]


def test_group_seeds_mean_and_sample_std(seeds: Path, capsys: pytest.CaptureFixture) -> None:
    records = as_json(seeds, "--group-seeds", capsys=capsys)
    assert [(r[LAM], r["n"], r["run"]) for r in records] == [
        (1e-3, 3, "lam0.001_seed0, lam0.001_seed1, lam0.001_seed2"),
        (1e-2, 3, "lam0.01_seed0, lam0.01_seed1, lam0.01_seed2")]
    assert "seed" not in records[0]
    # λ=1e-3: accuracies 0.90, 0.92, 0.94 → mean 0.92, sample std √((0.02² + 0 + 0.02²)/2) = 0.02
    assert records[0]["test_acc"] == pytest.approx(0.92) and records[0]["test_acc.std"] == pytest.approx(0.02)
    assert records[0]["sparsity.act1.zero_frac"] == pytest.approx(0.6)
    assert records[0]["sparsity.act1.zero_frac.std"] == pytest.approx(0.1)
    # λ=1e-2: 0.80, 0.80, 0.86 → mean 0.82, std √((0.02² + 0.02² + 0.04²)/2) = √0.0012
    assert records[1]["test_acc"] == pytest.approx(0.82) and records[1]["test_acc.std"] == pytest.approx(math.sqrt(0.0012))
    assert records[1]["sparsity.act1.zero_frac.std"] == pytest.approx(0.0)
    _, out, _ = compare(seeds, "--group-seeds", "--format", "markdown", capsys=capsys)
    assert "| 0.001 | 3 | completed | 0.5 ± 0 | 0.9200 ± 0.0200 |" in out


def test_group_seeds_leaves_unfinished_runs_out_of_the_mean(seeds: Path, capsys: pytest.CaptureFixture) -> None:
    write_run(seeds / "lam0.001_seed3", config(lam=1e-3, seed=3), status=None, metrics=[final(0.10, 0.1)])
    records = as_json(seeds, "--group-seeds", capsys=capsys)
    assert records[0]["status"] == "3 completed, 1 incomplete" and records[0]["n"] == 3
    assert records[0]["test_acc"] == pytest.approx(0.92)
    assert records[0]["error"] == "lam0.001_seed3: no summary.json (still running, or killed); last metrics row: epoch 2 of 2"


def test_baseline_deltas(sweep: Path, capsys: pytest.CaptureFixture) -> None:
    records = {r["run"]: r for r in as_json(sweep, "--baseline", sweep / "0", capsys=capsys)}
    assert records["2"]["test_acc.delta"] == pytest.approx(0.96 - 0.97)
    assert records["2"]["sparsity.l1_act.zero_frac.delta"] == pytest.approx(0.85 - 0.50)
    assert records["0"]["test_acc.delta"] == 0.0
    by_label = {r["run"]: r for r in as_json(sweep, "--baseline", "0", capsys=capsys)}  # a label works too
    assert by_label["1"]["test_acc.delta"] == pytest.approx(0.80 - 0.97)
    _, out, _ = compare(sweep, "--baseline", "0", "--format", "markdown", capsys=capsys)
    assert "| 2 | 0.001 | completed | 0.5 (+0) | 0.9600 (-0.0100) |" in out


def test_broken_folders_are_listed_and_the_others_still_print(mixed: Path, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code, out, err = compare(mixed, "--plot", tmp_path / "mixed.png", capsys=capsys)
    assert code == 0, err
    assert "0.9500" in out  # the completed run's accuracy
    for line in ("killed: incomplete: no summary.json (still running, or killed); last metrics row: epoch 2 of 5",
                 "garbled: broken: summary.json unreadable: Unterminated string",
                 "failed: failed: reg.targets.l1_act.lambda must be a finite number ≥ 0, got -1.0"):
        assert line in out
    assert (tmp_path / "mixed.png").read_bytes().startswith(PNG_SIGNATURE)
    records = {r["run"]: r for r in as_json(mixed, capsys=capsys)}
    assert records["killed"]["test_acc"] == 0.5 and records["failed"]["test_acc"] is None  # figures as they stand


def test_pareto_front_of_hand_made_points() -> None:
    points = [(0.1, 0.9), (0.5, 0.8), (0.3, 0.7), (0.9, 0.2), (0.5, 0.6), (0.9, 0.2), (0.05, 0.9)]
    # (0.3, 0.7) is beaten by (0.5, 0.8); (0.5, 0.6) too; (0.05, 0.9) by (0.1, 0.9);
    # the two (0.9, 0.2) do not beat each other
    assert pareto_front(points) == [0, 1, 3, 5]
    assert pareto_front([]) == [] and pareto_front([(0.0, 0.0)]) == [0]


def test_plot_data_and_png(sweep: Path, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    write_run(sweep / "3", config(lam=1.0), status=None, metrics=[final(0.99, 0.99)])  # unfinished: not plotted
    runs = find_runs([sweep])
    keys = differing_keys(runs)
    assert default_x(runs) == "sparsity.l1_act.zero_frac" and lambda_key(keys) == LAM
    points, front = tradeoff_points(runs, "sparsity.l1_act.zero_frac", "test_acc", keys)
    assert [(p.label, p.x, p.y) for p in points] == [
        ("λ=0", 0.50, 0.97), ("λ=0.01", 0.95, 0.80), ("λ=0.001", 0.85, 0.96), ("λ=0.0001", 0.60, 0.97)]
    # λ=0 (0.50, 0.97) is beaten by λ=1e-4 (0.60, 0.97); the others trade accuracy for sparsity
    assert [points[i].label for i in front] == ["λ=0.0001", "λ=0.001", "λ=0.01"]
    (series,) = lambda_series(runs, LAM, "sparsity.act1.zero_frac", keys)
    assert series.lambdas == [0.0, 1e-4, 1e-3, 1e-2] and series.means == [0.50, 0.60, 0.85, 0.95]
    png = tmp_path / "plot.png"
    code, _, err = compare(sweep, "--plot", png, capsys=capsys)
    assert code == 0 and png.read_bytes().startswith(PNG_SIGNATURE) and f"plot written to {png}" in err


def test_lambda_series_means_over_seeds(seeds: Path) -> None:
    runs = find_runs([seeds])
    (series,) = lambda_series(runs, LAM, "test_acc", differing_keys(runs))
    assert series.lambdas == [1e-3, 1e-2]
    assert series.means == pytest.approx([0.92, 0.82]) and sorted(series.values[1]) == [0.80, 0.80, 0.86]


@pytest.mark.parametrize("args, message", [
    (["{tmp}/nowhere"], "{tmp}/nowhere: no such file or directory"),
    (["{tmp}/empty"], "no run found under {tmp}/empty"),
    (["{sweep}", "--sort", "accuracy"], "--sort: unknown column 'accuracy'; allowed: run, reg.targets.l1_act.lambda, status, test_loss, test_acc,"),
    (["{sweep}", "--format", "xml"], "argument --format: invalid choice: 'xml' (choose from"),
    (["{sweep}", "--baseline", "{tmp}/elsewhere"], "--baseline {tmp}/elsewhere is not among the runs; give one of: 0, 1, 2, 10"),
    (["{sweep}", "--plot", "{tmp}/p.png", "--x", "sparsity"], "--x: unknown column 'sparsity'; allowed:"),
    (["{sweep}", "--plot", "{tmp}/no/such/dir/p.png"], "--plot {tmp}/no/such/dir/p.png: no folder {tmp}/no/such/dir to write it in"),
    (["{sweep}", "--plot", "{tmp}/p.xyz"], "plot {tmp}/p.xyz: cannot write it (Format 'xyz' is not supported"),
    ([], "the following arguments are required: PATH"),
])
def test_bad_input_is_one_line_and_exit_2(sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                          args: list[str], message: str) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    fill = {"tmp": tmp_path, "sweep": sweep}
    code, _, err = compare(*(a.format(**fill) for a in args), capsys=capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("regrun compare: error: "), err
    assert message.format(**fill) in lines[0]


def test_compare_reads_no_torch(sweep: Path, tmp_path: Path) -> None:
    """Hundreds of runs must take seconds: the command never imports torch."""
    code = ("import sys; from regrun.cli.compare import main; "
            f"assert main([{str(sweep)!r}, '--plot', {str(tmp_path / 'p.png')!r}]) == 0; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_a_warning_that_several_runs_share_is_listed_once_naming_them(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    shared = {"code": "subgradient_l1", "message": "L1 by gradient steps leaves 0.0% of its weights exactly zero"}
    for name, lam, extra in (("a", 1e-3, []), ("b", 1e-2, [{"code": "chance_level", "message": "at chance"}])):
        run = write_run(tmp_path / "runs" / name, config(lam=lam), final(0.9, 0.0))
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(json.dumps(summary | {"warnings": [shared, *extra]}))
    code, out, _ = compare(tmp_path / "runs", capsys=capsys)
    assert code == 0
    assert [line for line in out.splitlines() if "warning:" in line] == [
        f"a, b: warning: {shared['message']}", "b: warning: at chance"]


def test_a_runs_diagnostics_are_shown_under_the_table_and_in_the_records(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    run = write_run(tmp_path / "runs" / "r", config(), final(0.11, 0.0))
    summary = json.loads((run / "summary.json").read_text())
    summary["warnings"] = [{"code": "chance_level", "message": "test_acc = 0.11 is at chance level"}, "not a record"]
    (run / "summary.json").write_text(json.dumps(summary))
    write_run(tmp_path / "runs" / "s", config(lam=0.0), final(0.97, 0.5))
    code, out, _ = compare(tmp_path / "runs", capsys=capsys)
    assert code == 0
    assert [line for line in out.splitlines() if "warning:" in line] == ["r: warning: test_acc = 0.11 is at chance level"]
    records = as_json(tmp_path / "runs", capsys=capsys)
    assert [r["warnings"] for r in records] == [None, "test_acc = 0.11 is at chance level"]


REGRESSION = {"name": "regression", "figures": {"loss": "loss (MSE)", "r2": "R²", "mae": "mean absolute error"},
              "headline": "test_r2", "higher_is_better": True}


def regression_final(r2: float, loss: float, sparsity: float) -> dict[str, float]:
    """A regression run's last row: no accuracy, task figures on the validation split too."""
    row = {k: v for k, v in final(0.0, sparsity).items() if k != "test_acc"}
    return row | {"test_loss": loss, "test_r2": r2, "test_mae": loss / 2, "val_loss": loss, "val_r2": r2}


def test_columns_and_plot_follow_the_runs_task(tmp_path: Path) -> None:
    from regrun.analysis.plots import default_y, figure_names

    for i, (lam, r2, loss, zeros) in enumerate([(0.0, 0.9, 0.1, 0.5), (1e-3, 0.8, 0.2, 0.9), (1e-2, 0.7, 0.05, 0.4)]):
        write_run(tmp_path / str(i), config(lam=lam), regression_final(r2, loss, zeros), task=REGRESSION)
    runs = find_runs([tmp_path])
    assert figure_columns(runs)[:6] == ["test_loss", "test_r2", "test_mae", "val_loss", "val_r2", "train_task_loss"]
    assert default_y(runs) == "test_r2" and figure_names(runs)["val_r2"] == "val R²"
    x = "sparsity.l1_act.zero_frac"
    points, front = tradeoff_points(runs, x, "test_r2", differing_keys(runs))
    assert [points[i].run.path.name for i in front] == ["0", "1"]  # run 2 is beaten on both
    # a loss is better low: then run 2 (lowest loss) is on the front, run 1 (sparsest) too
    points, front = tradeoff_points(runs, x, "test_loss", differing_keys(runs))
    assert [points[i].run.path.name for i in front] == ["2", "0", "1"]


def test_runs_written_before_tasks_are_classifications(tmp_path: Path) -> None:
    from regrun.analysis.plots import default_y

    write_run(tmp_path / "old", last=final(0.9, 0.5), task=None)
    (run,) = find_runs([tmp_path])
    assert run.task == {} and run.headline == "test_acc" and default_y([run]) == "test_acc"


@pytest.fixture
def many(tmp_path: Path) -> Path:
    """45 runs of mixed configs: 3 λ × 3 seeds × 5 variants of epochs, batch size, widths
    and learning rates, so that many config keys differ."""
    root = tmp_path / "many"
    variants = [{}, {"trainer": {"epochs": 3}}, {"model": {"hidden": [64]}},
                {"optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.0}}, {"trainer": {"batch_size": 128}}]
    n = 0
    for lam in (0.0, 1e-4, 1e-3):
        for seed in (0, 1, 2):
            for variant in variants:
                cfg = config(lam=lam, seed=seed)
                for node, values in variant.items():
                    cfg[node] = {**cfg.get(node, {}), **values}
                write_run(root / str(n), cfg, final(0.9 + lam + 0.001 * seed, 0.5 + 100 * lam, lam), job_num=n)
                n += 1
    return root


@pytest.fixture
def columns_100(monkeypatch: pytest.MonkeyPatch) -> None:
    """A terminal 100 columns wide, for the command and for rich's console."""
    from rich import get_console

    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setattr(get_console(), "width", 100)


@pytest.mark.usefixtures("columns_100")
def test_a_table_of_many_mixed_runs_fits_100_columns_and_names_what_it_leaves_out(
        many: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, err = compare(many, capsys=capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 100
    header = "\n".join(lines[:12])
    for shown in ("run", "l1_act.", "lambda", "seed", "test", "acc"):  # λ, seed and the headline come first
        assert shown in header, shown
    assert any(line.startswith(tuple("123456789")) and "more columns:" in line for line in lines)
    assert len([line for line in lines if line.startswith("│")]) >= 45  # every run is a row
    code, out, _ = compare(many, "--format", "csv", capsys=capsys)
    csv_header = out.splitlines()[0].split(",")
    for column in ("trainer.epochs", "optimizer.lr", "sparsity.weights.below_0.001", "penalty.l1_act.raw"):
        assert column in csv_header, column  # the CSV always holds every column


def _joined(words: list[str]) -> str:
    """A header as one line again: its words one a line, a dotted key broken after its dots."""
    return "".join(w if i == 0 or words[i - 1].endswith(".") else " " + w for i, w in enumerate(words))


@pytest.mark.usefixtures("columns_100")
def test_45_runs_of_mixed_models_tasks_and_penalties_at_100_columns_show_every_header_and_value_whole(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = write_mixed_runs(tmp_path / "mixed")
    code, out, err = compare(root, capsys=capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 100
    comparison = compare_runs(find_runs([root]))
    comparison.sort()
    shown = table_columns(comparison, 100)
    headers, rows = display_rows(comparison)
    index = [comparison.columns.index(c) for c in shown]
    # Every header shown whole, one word a line: no column narrowed until its name folds or vanishes.
    head = [[cell.strip() for cell in line.strip("┃").split("┃")] for line in lines if line.startswith("┃")]
    assert all(len(cells) == len(shown) for cells in head)
    assert [_joined([cells[j] for cells in head if cells[j]]) for j in range(len(shown))] == \
        [headers[i] for i in index]
    # One line a run, and each value as compare formats it: none folded onto a second line.
    body = [line for line in lines if line.startswith("│")]
    assert len(body) == len(rows) == 45
    for line, cells in zip(body, rows):
        assert [cell.strip() for cell in line.strip("│").split("│")] == [cells[i] for i in index]
    for column in ("model.name", "dataset.name", "test_acc", "test_psnr", "test_r2", "test_loss"):
        assert column in shown, column  # what tells mixed runs apart, and each task's headline figure
    hidden = next(line for line in lines if "more columns:" in line)
    assert hidden.startswith(f"{len(comparison.columns) - len(shown)} more columns: ")
    code, out, _ = compare(root, "--format", "csv", capsys=capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 45 and set(comparison.columns) <= set(rows[0])  # the CSV holds every column
    assert sorted(row["sparsity.l1_code.l0"] != "" for row in rows).count(True) == 9  # the SAE runs' L0


def test_columns_choose_what_the_table_shows(sweep: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, err = compare(sweep, "--columns", "lambda,test_acc", capsys=capsys)
    assert code == 0, err
    head = out.splitlines()[:6]
    assert any("acc" in line for line in head) and not any("loss" in line for line in head)
    assert "more columns:" in out
    code, _, err = compare(sweep, "--columns", "nope", capsys=capsys)
    assert code == 2 and err.startswith("regrun compare: error: --columns: unknown column 'nope'; allowed: run")


def test_a_seed_grouped_tradeoff_is_the_mean_with_sample_std_and_a_front_over_means(seeds: Path) -> None:
    runs = find_runs([seeds])
    points, front = tradeoff_points(runs, "sparsity.l1_act.zero_frac", "test_acc", differing_keys(runs))
    by_label = {p.label: p for p in points}
    assert set(by_label) == {"λ=0.001", "λ=0.01"} and all(len(p.runs) == 3 for p in points)
    low, high = by_label["λ=0.001"], by_label["λ=0.01"]
    assert (low.x, low.y) == (pytest.approx(0.6), pytest.approx(0.92))
    assert low.x_std == pytest.approx(0.1) and low.y_std == pytest.approx(0.02)
    assert (high.x, high.y, high.x_std) == (pytest.approx(0.9), pytest.approx(0.82), pytest.approx(0.0))
    assert high.y_std == pytest.approx(math.sqrt(((0.8 - 0.82) ** 2 * 2 + 0.04**2) / 2))
    assert sorted(points[i].label for i in front) == ["λ=0.001", "λ=0.01"]  # neither mean beats the other


def test_labels_are_placed_off_each_other_and_off_the_points() -> None:
    from regrun.analysis.plots import place_labels

    anchors = [(100.0, 100.0)] * 4 + [(108.0, 104.0), (300.0, 50.0)]  # four on one spot, one beside them
    sizes = [(60.0, 10.0)] * len(anchors)
    offsets = place_labels(anchors, sizes)
    boxes = [(x + dx, y + dy, x + dx + w, y + dy + h) for (x, y), (dx, dy), (w, h) in zip(anchors, offsets, sizes)]
    markers = [(x - 8, y - 8, x + 8, y + 8) for x, y in anchors]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:] + markers:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)


def test_a_seed_grouped_sweep_figure_says_what_varies_and_never_overlaps_its_labels(tmp_path: Path) -> None:
    from regrun.analysis.plots import draw_runs

    for lam, acc, sparsity in [(0.0, 0.970, 0.50), (1e-5, 0.971, 0.51), (1e-4, 0.969, 0.60), (1e-3, 0.950, 0.85)]:
        for seed in range(3):
            write_run(tmp_path / f"{lam:g}-{seed}", config(lam=lam, seed=seed),
                      final(acc + 0.002 * seed, sparsity + 0.01 * seed, lam))
    runs = find_runs([tmp_path])
    fig = draw_runs(runs, "sparsity.l1_act.zero_frac", "test_acc", differing_keys(runs))
    title = fig._suptitle.get_text()
    assert title.startswith("λ ∈ {0, 1e-05, 0.0001, 0.001} × seed ∈ {0, 1, 2}: 12 completed runs, 4 configs")
    assert "mean ± std over 3 seeds" in title
    tradeoff = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    texts = [t for t in tradeoff.texts if t.get_text().startswith("λ=")]
    assert sorted(t.get_text() for t in texts) == ["λ=0", "λ=0.0001", "λ=0.001", "λ=1e-05"]
    boxes = [t.get_window_extent(renderer) for t in texts]
    for i, a in enumerate(boxes):
        assert not any(a.overlaps(b) for b in boxes[i + 1:]), texts[i].get_text()
    legend = [t.get_text() for t in tradeoff.get_legend().get_texts()]
    assert "mean ± sample std over 3 seeds" in legend
    assert any(text.startswith("Pareto front of the means") for text in legend)
    assert any(text.startswith("baseline λ=0: ") for text in legend)
    assert "axis zoomed to" in tradeoff.get_ylabel()  # accuracies within 0.03 of each other
    # The legend hides no label, point or error bar: it lies below all of them.
    legend = tradeoff.get_legend().get_window_extent(renderer)
    assert not any(legend.overlaps(box) for box in boxes)
    points, _ = tradeoff_points(runs, "sparsity.l1_act.zero_frac", "test_acc", differing_keys(runs))
    lowest = min(tradeoff.transData.transform((p.x, p.y - p.y_std))[1] for p in points)
    assert legend.y1 < lowest
    curves = fig.axes[3]  # test accuracy per epoch: zoomed as much, and said so too
    assert curves.get_title() == "test accuracy per epoch" and "axis zoomed to" in curves.get_ylabel()
