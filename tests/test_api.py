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
    ("reg=l1_everything", "reg=l1_everything: no option 'l1_everything' in group reg; allowed: elastic_net"),
    ("trainer.epochs", "trainer.epochs: an override needs a value: trainer.epochs=VALUE"),
    ("trainer.epoch=1", "trainer.epoch=1: trainer has no key 'epoch'; did you mean trainer.epochs=1?"),
    ("hydra.run.dir=", "hydra.run.dir=: an empty folder would write the run into the current directory"),
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


@pytest.mark.parametrize("overrides, message", [
    ("trainer.epochs=1", "overrides must be a list of strings, got the string 'trainer.epochs=1'; "
                         "pass a list: train(['trainer.epochs=1'])"),
    ([5], "overrides must be a list of strings such as ['trainer.epochs=1']; 5 is a int: write it as 'KEY=5'"),
    (["seed=1", None], "overrides must be a list of strings such as ['trainer.epochs=1']; None is a NoneType"),
    (3, "overrides must be a list of strings such as ['trainer.epochs=1'], got int 3"),
    (["-m", "seed=0,1"], "'-m': train() takes overrides, not the command's flags; a sweep is a loop: "
                         "[regrun.train([f'seed={s}', ...]) for s in (0, 1, 2)]"),
    (["--config-dir=presets"], "'--config-dir=presets': train() takes overrides, not the command's flags; "
                               "pass train(overrides, config_dir=DIR)"),
    (["--cfg", "job"], "'--cfg': train() takes overrides (KEY=VALUE, GROUP=OPTION), not the command's flags"),
])
def test_overrides_must_be_a_list_of_strings(overrides: object, message: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RegrunError) as err:
        regrun.train(overrides)  # type: ignore[arg-type]
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value) and not list(tmp_path.iterdir())  # nothing written


def test_the_run_goes_through_hydras_job_plumbing(tiny_root: Path, tmp_path: Path) -> None:
    """.hydra/ holds Hydra's own three files (hydra.yaml too), the job log is regrun.log, and
    the caller's logging is as it was afterwards."""
    import logging

    root = logging.getLogger()
    before = root.handlers[:], root.level
    out = tmp_path / "run"
    summary = regrun.train([*tiny(tiny_root), f"hydra.run.dir={out}", "seed=3"])
    assert summary["status"] == "completed" and summary["run_dir"] == str(out)
    assert sorted(p.name for p in (out / ".hydra").iterdir()) == ["config.yaml", "hydra.yaml", "overrides.yaml"]
    from omegaconf import OmegaConf

    assert OmegaConf.load(out / ".hydra" / "hydra.yaml").hydra.runtime.output_dir == str(out)
    assert "seed=3" in OmegaConf.load(out / ".hydra" / "overrides.yaml")
    assert OmegaConf.load(out / ".hydra" / "config.yaml").seed == 3
    assert "run directory:" in (out / "regrun.log").read_text()
    assert (root.handlers[:], root.level) == before


def test_a_config_folder_adds_presets(tiny_root: Path, tmp_path: Path) -> None:
    presets = tmp_path / "presets"
    (presets / "reg").mkdir(parents=True)
    (presets / "reg" / "fc1_l1.yaml").write_text(
        "targets:\n  fc1_l1:\n    layers: [fc1]\n    site: weights\n    penalty: l1\n    lambda: 0.001\n")
    out = tmp_path / "run"
    summary = regrun.train([*tiny(tiny_root)[:-1], "reg=fc1_l1", f"hydra.run.dir={out}"], config_dir=presets)
    assert summary["status"] == "completed"
    assert {t["target"] for t in summary["targets"]} == {"fc1_l1"}
    with pytest.raises(RegrunError, match=r"^config_dir .*nowhere: no such directory"):
        regrun.train(tiny(tiny_root), config_dir=tmp_path / "nowhere")
    with pytest.raises(RegrunError, match=r"^reg=fc1_l2: no option 'fc1_l2' in group reg; did you mean reg=fc1_l1\?"):
        regrun.train([*tiny(tiny_root)[:-1], "reg=fc1_l2"], config_dir=presets)


def test_a_run_refused_over_another_run_raises_and_writes_nothing(tiny_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    regrun.train([*tiny(tiny_root), f"hydra.run.dir={out}"])
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(RegrunError, match=r"already holds another run \(seed differs\)"):
        regrun.train([*tiny(tiny_root), f"hydra.run.dir={out}", "seed=9"])
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # .lock and .hydra/ too
