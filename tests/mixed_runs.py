"""45 runs of mixed models, tasks and regularizers (MLP, CNN, autoencoder; classification,
regression, reconstruction; L1 on activations, L2 on weights, an L1 code, elastic net,
proximal group lasso with prune.json), 3 λ × 3 seeds each, for compare's table width."""

import json
from pathlib import Path
from typing import Any

from fake_runs import CLASSIFICATION, config, write_run

REGRESSION = {"name": "regression", "figures": {"loss": "loss (MSE)", "r2": "R²", "mae": "mean absolute error"},
              "headline": "test_r2", "higher_is_better": True}
RECONSTRUCTION = {"name": "reconstruction", "figures": {"loss": "loss (MSE)", "psnr": "PSNR (dB)",
                                                        "fvu": "fraction of variance unexplained"},
                  "headline": "test_psnr", "higher_is_better": True}


def _target(name: str, site: str, penalty: str, tensor: str, lam: float) -> dict[str, Any]:
    return {"target": name, "site": site, "penalty": penalty, "lambda": lam, "tensor": tensor}


def _common(target: str, lam: float, raw: float, loss: float) -> dict[str, float]:
    return {"epoch": 3, "step": 300, "train_task_loss": loss, f"penalty.{target}.raw": raw,
            f"penalty.{target}.weighted": lam * raw, "train_penalty_total": lam * raw,
            "train_total_loss": loss + lam * raw, "sparsity.weights.zero_frac": 0.0,
            "sparsity.weights.below_0.001": 0.02 + lam, "epoch_time_s": 1.5}


def _kind(kind: str, lam: float, seed: int) -> tuple[dict, dict, dict, list]:
    """(config, last metrics row, task, target rows) of one run of a kind."""
    cfg = config(lam=lam, seed=seed, epochs=3)
    wobble = 0.001 * seed
    if kind == "mlp_l1_act":
        last = _common("l1_act", lam, 50.0, 0.1) | {"test_loss": 0.12, "test_acc": 0.97 - lam + wobble,
                                                    "sparsity.act1.zero_frac": 0.6 + 100 * lam,
                                                    "sparsity.l1_act.zero_frac": 0.6 + 100 * lam}
        return cfg, last, CLASSIFICATION, [_target("l1_act", "activations", "l1", "act1", lam)]
    if kind == "cnn_l2":
        cfg["model"] = {"name": "cnn", "channels": [32, 64]}
        cfg["dataset"] = {"name": "cifar10", "root": "data"}
        cfg["reg"] = {"targets": {"l2_w": {"site": "weights", "penalty": "l2", "lambda": lam}}}
        last = _common("l2_w", lam, 900.0, 0.9) | {
            "test_loss": 1.1, "test_acc": 0.61 + wobble, "sparsity.l2_w.zero_frac": 0.0,
            "sparsity.l2_w.below_0.001": 0.01, "sparsity.conv1.weight.zero_filters": 0.0,
            "sparsity.conv1.weight.zero_channels": 0.0, "sparsity.conv1.weight.zero_kernels": 0.03,
            "sparsity.fc.weight.zero_rows": 0.0, "sparsity.fc.weight.zero_cols": 0.0}
        return cfg, last, CLASSIFICATION, [_target("l2_w", "weights", "l2", "conv1.weight", lam)]
    if kind == "sae":
        cfg["model"] = {"name": "autoencoder", "code_size": 64}
        cfg["reg"] = {"targets": {"l1_code": {"layers": ["code"], "site": "activations", "penalty": "l1",
                                              "lambda": lam, "warmup_steps": 500}}}
        last = _common("l1_code", lam, 30.0, 0.02) | {
            "test_loss": 0.021, "test_psnr": 16.5 - 100 * lam + wobble, "test_fvu": 0.2 + 10 * lam,
            "sparsity.code.zero_frac": 0.5 + 10 * lam, "sparsity.l1_code.zero_frac": 0.5 + 10 * lam,
            "sparsity.l1_code.l0": 32.0 - 100 * lam, "sparsity.l1_code.dead_frac": 0.05,
            "sparsity.l1_code.train_dead_frac": 0.03}
        return cfg, last, RECONSTRUCTION, [_target("l1_code", "activations", "l1", "code", lam)]
    if kind == "regression_elastic":
        cfg["dataset"] = {"name": "toy_regression", "features": 8, "val_size": 0.1}
        cfg["reg"] = {"targets": {"enet": {"site": "weights", "penalty": "elastic_net", "lambda": lam}}}
        last = _common("enet", lam, 12.0, 0.3) | {"test_loss": 0.31, "test_r2": 0.88 - lam + wobble,
                                                  "test_mae": 0.4, "val_loss": 0.32, "val_r2": 0.87, "val_mae": 0.41,
                                                  "sparsity.enet.zero_frac": 0.0, "sparsity.enet.below_0.001": 0.2}
        return cfg, last, REGRESSION, [_target("enet", "weights", "elastic_net", "fc1.weight", lam)]
    cfg["reg"] = {"targets": {"group_lasso": {"layers": ["fc1"], "site": "weights", "penalty": "group_lasso",
                                              "lambda": lam, "proximal": True}}}
    cfg["prune"] = {"at_end": True, "levels": [0.5, 0.9]}
    last = _common("group_lasso", lam, 70.0, 0.15) | {
        "test_loss": 0.2, "test_acc": 0.95 - lam + wobble, "sparsity.group_lasso.zero_frac": 0.3 + 100 * lam,
        "sparsity.group_lasso.below_0.001": 0.31 + 100 * lam, "sparsity.fc1.weight.zero_rows": 0.3 + 100 * lam,
        "sparsity.fc1.weight.zero_cols": 0.1, "sparsity.fc2.weight.zero_rows": 0.0,
        "sparsity.fc2.weight.zero_cols": 0.3 + 100 * lam}
    return cfg, last, CLASSIFICATION, [_target("group_lasso", "weights", "group_lasso", "fc1.weight", lam)]


KINDS = ("mlp_l1_act", "cnn_l2", "sae", "regression_elastic", "group_lasso")


def write_mixed_runs(root: Path) -> Path:
    """The 45 runs, job folders 0..44; the group lasso runs with their prune.json."""
    n = 0
    for kind in KINDS:
        for lam in (0.0, 1e-4, 1e-3):
            for seed in (0, 1, 2):
                cfg, last, task, targets = _kind(kind, lam, seed)
                path = write_run(root / str(n), cfg, last, job_num=n, task=task, targets=targets)
                if kind == "group_lasso":
                    rows = [{"scope": "global", "level": level, "sparsity": level, "test_acc": acc, "test_loss": 0.3}
                            for level, acc in ((0.0, last["test_acc"]), (0.5, 0.94), (0.9, 0.8 + 100 * lam))]
                    (path / "prune.json").write_text(json.dumps(rows))
                n += 1
    return root
