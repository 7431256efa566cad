"""The figures the README and the docs quote, from real runs on real MNIST.

Each of the README's five questions' commands is run, its final figures written to
docs/results/readme.json; tests/test_docs.py checks that every figure the README quotes is
the one this file holds, so a figure that no longer reproduces fails the tests once this
script is run again. The docs' sweep tables (the pruning how-to's, the sparse autoencoder
tutorial's) are `regrun compare --format json` of the sweeps in `SWEEPS`, written to
docs/results/<name>.json and rendered into the pages by docs/hooks/reference.py, so that
no table of figures is typed by hand.

    python bench/doc_figures.py --data-root ../shared/data
    python bench/doc_figures.py --data-root ../shared/data --only prune_sweep sae_sweep
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from regrun.layout import SUMMARY  # noqa: E402

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


# name → (the sweep's command, a command to run on its folder after it, or None): what the docs show.
SWEEPS = {
    "prune_sweep": (["-m", "hydra/launcher=fused", "reg=l1_weights", "reg.targets.l1_weights.lambda=0,1e-5,1e-4,1e-3",
                     "trainer.epochs=3", "prune.at_end=true"], ["prune", "{dir}", "--finetune-epochs", "1"]),
    "sae_sweep": (["-m", "experiment=sparse_autoencoder", "reg.targets.l1_code.lambda=0,1e-3,3e-3,1e-2",
                   "dataset.train_limit=15000", "reg.targets.l1_code.warmup_steps=200"], None),
}


def regrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`regrun ARGS` from this checkout, its output captured; a failure stops the script."""
    env = os.environ | {"COLUMNS": "120", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "regrun", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          check=True)


def sweep(name: str, data_root: str, out: Path) -> dict:
    """Run the sweep (and its follow-up) in a fresh folder; compare's rows of it."""
    args, then = SWEEPS[name]
    folder = out / name
    regrun([*args, f"dataset.root={data_root}", f"hydra.sweep.dir={folder}"], out)
    if then:
        regrun([a.format(dir=folder) for a in then], out)
    rows = json.loads(regrun(["compare", str(folder), "--format", "json"], out).stdout)
    for row in rows:
        row.pop("path", None)  # a temporary folder
    shown = [a for a in args if a != "-m"] + ([f"then: regrun {' '.join(then)}"] if then else [])
    return {"command": "regrun -m " + " ".join(shown), "rows": rows}


def run(name: str, args: list[str], data_root: str, out: Path) -> dict:
    """Run the command in a fresh folder; its summary.json, its console output's last lines."""
    run_dir = out / name
    done = regrun([*args, f"dataset.root={data_root}", f"hydra.run.dir={run_dir}"], out)
    summary = json.loads((run_dir / SUMMARY).read_text())
    return {"command": "regrun " + " ".join(args), "status": summary["status"], "final": summary["final"],
            "warnings": [w["code"] for w in summary.get("warnings", [])], "output": done.stdout + done.stderr}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--only", nargs="*", default=[*COMMANDS, *SWEEPS], choices=[*COMMANDS, *SWEEPS])
    args = parser.parse_args()
    data_root = str(Path(args.data_root).resolve())
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            if name in SWEEPS:
                (OUT.parent / f"{name}.json").write_text(json.dumps(sweep(name, data_root, Path(tmp)), indent=1) + "\n")
                print(name, "written")
                continue
            results[name] = run(name, COMMANDS[name], data_root, Path(tmp))
            print(name, results[name]["status"], results[name]["warnings"])
    OUT.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
