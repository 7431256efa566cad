"""The Python API: regrun.train and regrun.compare, the command's code paths from Python."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import regrun
from regrun.errors import RegrunError


def tiny(root: Path) -> list[str]:
    return [f"dataset.root={root}", "dataset.download=false", "trainer.device=cpu", "trainer.epochs=1",
            "trainer.batch_size=32", "reg=l1_activations"]


def test_train_then_compare_like_the_command(tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default run dir is outputs/runs/<date>/<time> under the cwd
    first = regrun.train([*tiny(tiny_root), "reg.targets.l1_activations.lambda=0"])
    second = regrun.train([*tiny(tiny_root), "reg.targets.l1_activations.lambda=0.01"])
    runs = [Path(s["run_dir"]) for s in (first, second)]
    assert runs[0] != runs[1] and all(p.parent.parent == tmp_path / "outputs" / "runs" for p in runs)
    assert first["status"] == "completed"
    on_disk = json.loads((runs[0] / "summary.json").read_text())
    assert on_disk["final"] == first["final"]
    assert "epoch 1/1" in (runs[0] / "regrun.log").read_text()  # the job's log, as the command writes it
    rows = regrun.compare([tmp_path / "outputs"], sort="lambda")
    assert [row["reg.targets.l1_activations.lambda"] for row in rows] == [0, 0.01]
    assert rows[1]["test_acc"] == second["final"]["test_acc"] and rows[1]["path"] == str(runs[1])


def test_train_writes_where_hydra_run_dir_says(tiny_root: Path, tmp_path: Path) -> None:
    summary = regrun.train([*tiny(tiny_root), f"hydra.run.dir={tmp_path / 'here'}"])
    assert summary["run_dir"] == str(tmp_path / "here")
    assert (tmp_path / "here" / ".hydra" / "overrides.yaml").exists()


@pytest.mark.parametrize("override, message", [
    ("reg.targets.l1_activations.lambda=-1", "reg.targets.l1_activations.lambda must be a finite number ≥ 0, got -1"),
    ("reg=l1_everything", "In 'config': Could not find 'reg/l1_everything'"),
    ("trainer.epochs", "Error parsing override 'trainer.epochs'"),
])
def test_bad_input_raises_regrun_error_not_system_exit(tiny_root: Path, tmp_path: Path, override: str,
                                                       message: str) -> None:
    with pytest.raises(RegrunError) as err:
        regrun.train([*tiny(tiny_root), f"hydra.run.dir={tmp_path / 'bad'}", override])
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_compare_of_no_run_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RegrunError, match="no run found"):
        regrun.compare([tmp_path])


def test_import_regrun_stays_light() -> None:
    code = "import sys, regrun; print(sorted(m for m in ('torch', 'hydra') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
