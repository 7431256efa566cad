"""The project's conventions a user relies on: one version, read from the package metadata;
a licence in the wheel; a changelog; regrun's configs as a Hydra config module; printing a
config writes nothing."""

import re
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import regrun
from hydra import compose, initialize_config_dir, initialize_config_module

import regrun as package
from regrun.cli import main

ROOT = Path(__file__).resolve().parents[2]
VERSION = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M).group(1)


def test_version_is_the_one_pyproject_writes(tmp_path: Path) -> None:
    proc = regrun("--version", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith(f"regrun {VERSION} ("), proc.stdout + proc.stderr
    assert package.__version__ == VERSION
    assert not list(tmp_path.iterdir())


def test_the_version_is_written_nowhere_else_in_the_package() -> None:
    spelled = [str(p.relative_to(ROOT)) for p in [*(ROOT / "regrun").rglob("*.py"), *(ROOT / "hydra_plugins").rglob("*.py")]
               if f'"{VERSION}"' in p.read_text() or f"'{VERSION}'" in p.read_text()]
    assert spelled == []


def test_the_wheel_ships_the_licence_the_configs_and_the_version(tmp_path: Path) -> None:
    builders = pytest.importorskip("hatchling.builders.wheel")
    wheel = Path(next(builders.WheelBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"])))
    names = zipfile.ZipFile(wheel).namelist()
    dist_info = f"regrun-{VERSION}.dist-info"
    assert f"{dist_info}/licenses/LICENSE" in names
    assert {"regrun/conf/__init__.py", "regrun/conf/config.yaml", "regrun/conf/reg/l1_activations.yaml",
            "hydra_plugins/regrun_fused_launcher/__init__.py"} <= set(names)
    metadata = zipfile.ZipFile(wheel).read(f"{dist_info}/METADATA").decode()
    assert f"Version: {VERSION}\n" in metadata and "License: MIT" in metadata
    assert "MIT License" in (ROOT / "LICENSE").read_text()


def test_the_changelog_has_a_section_for_this_version() -> None:
    assert f"## [{VERSION}]" in (ROOT / "CHANGELOG.md").read_text()


def test_regrun_conf_is_a_hydra_config_module() -> None:
    with initialize_config_module("regrun.conf", version_base="1.3"):
        cfg = compose("config", overrides=["reg=l1_weights", "reg.targets.l1_weights.layers=[fc1]"])
    assert cfg.reg.targets.l1_weights.layers == ["fc1"] and cfg.model.name == "mlp"


def test_an_app_of_ones_own_composes_regruns_config_through_pkg(tmp_path: Path) -> None:
    (tmp_path / "study.yaml").write_text("defaults:\n  - config\n  - _self_\n"
                                         "hydra:\n  searchpath: [pkg://regrun.conf]\nnote: mine\n")
    with initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
        cfg = compose("study", overrides=["model=cnn"])
    assert cfg.note == "mine" and cfg.model.name == "cnn" and cfg.trainer.epochs == 5


def test_printing_a_config_writes_nothing(tmp_path: Path) -> None:
    proc = regrun("--cfg", "job", "reg=l1_activations", cwd=tmp_path)  # the console script itself
    assert proc.returncode == 0 and "l1_activations" in proc.stdout, proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("keep_signal_handlers")
@pytest.mark.parametrize("flags", [["--cfg", "hydra"], ["--cfg", "all"], ["-c", "job"], ["--info", "config"],
                                   ["--cfg", "job", "hydra.run.dir=somewhere/run"]])
def test_no_way_of_printing_a_config_writes_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture, flags: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["regrun", *flags, "reg=l1_activations"])
    main()  # in-process, through the console script's `main`: it prints and returns
    assert "l1_activations" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_cfg_with_a_sweep_is_one_line(tmp_path: Path) -> None:
    proc = regrun("-m", "--cfg", "job", "reg=l1_activations", "reg.targets.l1_activations.lambda=0,1e-3", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("regrun: error: --cfg prints one run's config and cannot be combined with -m; "
                                   "allowed: --cfg without -m, with one value per swept key")
    assert list(tmp_path.iterdir()) == []
