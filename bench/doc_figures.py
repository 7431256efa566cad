"""The figures the README quotes, from real runs: each of its five questions' commands run on
real MNIST, their final figures written to docs/results/readme.json. tests/test_docs.py
checks that every figure the README quotes is the one this file holds, so a figure that no
longer reproduces fails the tests once this script is run again.

    python bench/doc_figures.py --data-root ../shared/data
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "results" / "readme.json"

# name → the README's command (without its data root); each question of the README is one.
COMMANDS = {
    "activations": ["reg=l1_activations", "reg.targets.l1_activations.layers=[act1]",
                    "reg.targets.l1_activations.lambda=1e-3", "trainer.epochs=1"],
    "activations_baseline": ["reg=l1_activations", "reg.targets.l1_activations.layers=[act1]",
                             "reg.targets.l1_activations.lambda=0", "trainer.epochs=1"],
    "weights": ["reg=l1_weights", "reg.targets.l1_weights.layers=[fc1]", "optimizer=sgd",
                "reg.targets.l1_weights.proximal=true", "reg.targets.l1_weights.lambda=1e-2", "trainer.epochs=1"],
    "conv": ["experiment=sparse_conv_autoencoder", "trainer.epochs=1"],
    "collapse": ["experiment=l1_all_params_collapse"],
}


def run(name: str, args: list[str], data_root: str, out: Path) -> dict:
    """Run the command in a fresh folder; its summary.json, its console output's last lines."""
    run_dir = out / name
    cmd = [sys.executable, "-m", "regrun", *args, f"dataset.root={data_root}", f"hydra.run.dir={run_dir}"]
    env = os.environ | {"COLUMNS": "120", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=out, check=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"command": "regrun " + " ".join(args), "status": summary["status"], "final": summary["final"],
            "warnings": [w["code"] for w in summary.get("warnings", [])], "output": done.stdout + done.stderr}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--only", nargs="*", default=list(COMMANDS))
    args = parser.parse_args()
    data_root = str(Path(args.data_root).resolve())
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            results[name] = run(name, COMMANDS[name], data_root, Path(tmp))
            print(name, results[name]["status"], results[name]["warnings"])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
