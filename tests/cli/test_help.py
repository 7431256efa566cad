"""`regrun --help`: Hydra's help, then every registry's names, plugins included."""

import os
import subprocess
import sys
from pathlib import Path

from conftest import write_plugin

REGRUN = str(Path(sys.executable).parent / "regrun")


def test_help_lists_the_registries_with_plugins(tmp_path: Path) -> None:
    site = write_plugin(tmp_path)
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([REGRUN, "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "model: autoencoder, cnn, custom, mlp" in lines  # Hydra's config groups
    assert "models (model.name): mlp, cnn, autoencoder, custom, tiny   [plugins: entry points regrun.models]" in lines
    assert any(line.startswith("penalties (reg.targets.*.penalty): l1, l2,") for line in lines)
    assert any(line.startswith("optimizers (optimizer.name): sgd, adam, adamw") for line in lines)
    for command in ("compare", "resume", "prune"):  # the subcommands are found from the main help
        assert any(line.strip().startswith(f"regrun {command} ") for line in lines), command
    assert not (tmp_path / "outputs").exists()  # help runs nothing
