"""One run, config to run directory: model + targets → trainer → files.

Everything that can be checked without data is checked first (trainer settings, dataset
name, model, targets, optimizer), then the data is loaded, then training starts; a bad
config costs a second, not an epoch.
"""

import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from regrun.data import check_dataset_config, load_data
from regrun.display import RichReporter, shared_console, show_summary, show_targets
from regrun.errors import RegrunError, is_number
from regrun.models import build_model
from regrun.optim import build_optimizer
from regrun.rundir import RunDir, environment, loss_breakdown, mark_targeted
from regrun.targets import describe_targets, resolve_targets
from regrun.trainer import TrainerSettings, fit, pick_device

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) from one number."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def thresholds_from(cfg: dict[str, Any]) -> list[float]:
    """The `sparsity.thresholds` list, validated: positive numbers, in the config's order."""
    values = cfg.get("sparsity", {}).get("thresholds", [])
    if not isinstance(values, list) or not all(is_number(v) and v > 0 for v in values):
        raise RegrunError(f"sparsity.thresholds must be a list of positive numbers, got {values!r}")
    return [float(v) for v in values]


def reg_targets(reg: dict[str, Any]) -> dict[str, Any]:
    """The `reg.targets` mapping; any other key under `reg` is a typo that would regularize nothing."""
    for key in reg:
        if key != "targets":
            raise RegrunError(f"reg.{key}: unknown key; reg holds only `targets` (a mapping of target name to spec)")
    targets = reg.get("targets") or {}
    if not isinstance(targets, dict):
        raise RegrunError(f"reg.targets must be a mapping of target name to spec, got {targets!r}")
    return targets


def run(cfg: dict[str, Any], out: Path) -> dict[str, Any]:
    """Train as `cfg` says and write the run directory `out`; returns the summary."""
    started = time.perf_counter()
    console = shared_console()  # first: the log lines below go through it too
    seed = cfg["seed"]
    if not is_number(seed) or not isinstance(seed, int):
        raise RegrunError(f"seed must be an integer, got {seed!r}")
    settings = TrainerSettings.from_config(cfg["trainer"])
    thresholds = thresholds_from(cfg)
    device = pick_device(settings.device)
    info = check_dataset_config(cfg["dataset"])
    seed_everything(seed)
    model = build_model(cfg["model"], info.input_shape, info.num_classes).to(device)
    targets = resolve_targets(model, reg_targets(cfg["reg"]))
    optimizer = build_optimizer(model, cfg["optimizer"])
    if any(t.proximal for t in targets) and isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW):
        log.warning("proximal L1 with %s: the threshold lr·λ is not scaled like Adam's per-coordinate "
                    "steps, so it zeroes far less than with optimizer=sgd at the same λ", cfg["optimizer"]["name"])
    rundir = RunDir(out)

    example = torch.zeros((1, *info.input_shape), device=device)
    target_rows = describe_targets(targets, model, example)
    show_targets(target_rows, console)
    rundir.write_json("targets.json", target_rows)

    data = load_data(cfg["dataset"], device)
    log.info("%s on %s: %d train / %d test samples; %s, %d parameters",
             data.name, device, len(data.train), len(data.test), cfg["model"]["name"],
             sum(p.numel() for p in model.parameters()))
    with RichReporter(settings.epochs, [t.name for t in targets], console) as reporter:
        final = fit(model, targets, optimizer, data, settings, thresholds, seed, reporter, rundir.append_metrics)
    rundir.save_model(model)

    mark_targeted(final.activations, final.weights, targets)
    last = rundir.rows[-1]
    summary = {
        "status": "completed",
        "final": last,
        "loss_breakdown": loss_breakdown(last, {t.name: t.lam for t in targets}),
        "sparsity": {"thresholds": thresholds, "weights": final.weights, "activations": final.activations},
        "targets": target_rows,
        "environment": environment(device, seed, time.perf_counter() - started),
        "config": cfg,
    }
    rundir.write_json("summary.json", summary)
    show_summary(summary, console)
    log.info("run directory: %s", out)
    return summary
