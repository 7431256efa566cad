"""Run directories written by hand, laid out as regrun/run.py and Hydra lay them out, with
figures chosen so that tables, means and Pareto fronts can be checked by hand."""

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml


def config(lam: float = 1e-3, seed: int = 0, epochs: int = 2) -> dict[str, Any]:
    """A run's resolved config; only `lam`, `seed` and `epochs` vary between the fakes."""
    return {
        "seed": seed,
        "trainer": {"epochs": epochs, "batch_size": 64, "device": "cpu"},
        "model": {"name": "mlp", "hidden": [256, 128]},
        "dataset": {"name": "mnist", "root": "data"},
        "reg": {"targets": {"l1_act": {"layers": ["act1"], "site": "activations", "penalty": "l1", "lambda": lam}}},
    }


def final(acc: float, sparsity: float, lam: float = 1e-3, raw: float = 50.0) -> dict[str, float]:
    """A last metrics row: `sparsity` is both act1's zero fraction and the target's."""
    return {"epoch": 2, "step": 20, "train_task_loss": 1.0 - acc, "penalty.l1_act.raw": raw,
            "penalty.l1_act.weighted": lam * raw, "train_penalty_total": lam * raw,
            "train_total_loss": 1.0 - acc + lam * raw, "test_loss": 0.5, "test_acc": acc,
            "sparsity.weights.zero_frac": 0.0, "sparsity.weights.below_0.001": 0.02,
            "sparsity.act1.zero_frac": sparsity, "sparsity.act2.zero_frac": 0.3,
            "sparsity.l1_act.zero_frac": sparsity, "epoch_time_s": 0.1}


CLASSIFICATION = {"name": "classification", "figures": {"loss": "loss", "acc": "accuracy"}, "headline": "test_acc",
                  "higher_is_better": True}
TARGET_ROWS = [{"target": "l1_act", "site": "activations", "penalty": "l1", "lambda": 1e-3, "tensor": "act1"}]


def write_run(path: Path, cfg: dict[str, Any] | None = None, last: dict[str, float] | None = None,
              status: str | None = "completed", error: str | None = None,
              metrics: Sequence[dict[str, Any]] | None = None, overrides: Sequence[str] = (),
              job_num: int | None = None, task: dict[str, Any] | None = CLASSIFICATION,
              targets: Sequence[dict[str, Any]] = TARGET_ROWS) -> Path:
    """A run directory: .hydra/ (config, overrides, hydra), metrics.csv, and summary.json
    (with `task` unless None: runs written before tasks existed, and the `targets` rows)
    unless `status` is None (a run still going, or killed)."""
    cfg = cfg if cfg is not None else config()
    hydra_dir = path / ".hydra"
    hydra_dir.mkdir(parents=True)
    (hydra_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    (hydra_dir / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": job_num}}}))
    rows = list(metrics) if metrics is not None else ([last] if last else [])
    if rows:
        with open(path / "metrics.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[-1]), restval="")
            writer.writeheader()
            writer.writerows(rows)
    if status is not None:
        summary = {"status": status, "config": cfg, "targets": list(targets)} | ({"task": task} if task else {})
        if last is not None:
            summary["final"] = last
        if error is not None:
            summary["error"] = error
        (path / "summary.json").write_text(json.dumps(summary))
    return path
