"""The run directory's contract: its files, a run's statuses and the metrics columns.

The trainer writes these names and every reader (compare, resume, the sweep summary, the
Python API) reads them from here, so a name is spelled once. Kept free of torch, so
that `regrun compare` starts in a blink.

    config.json    the resolved config, written once it is validated
    targets.json   the resolved targets, written before training
    groups.json    the resolved optimizer parameter groups
    metrics.csv    one row per epoch (rewritten atomically after each epoch)
    steps.csv      with trainer.log_steps=N: one row every N steps, that step's loss terms and λ
    checkpoint.pt  all that `regrun resume` needs
    summary.json   status, final figures, loss breakdown, per-layer sparsity, targets,
                   environment, config
    model.pt       the model's state dict, when the run completed
    regrun.log     the job's log (Hydra's job logging)
    .lock          held (flock) by the one process writing the run; names its pid and command
"""

CONFIG = "config.json"
TARGETS = "targets.json"
GROUPS = "groups.json"
METRICS = "metrics.csv"
STEPS = "steps.csv"
CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"
MODEL = "model.pt"
LOG = "regrun.log"
LOCK = ".lock"

# How a run ended (summary.json's `status`). A reader adds two of its own for folders
# without a readable summary: INCOMPLETE (still running, or killed) and BROKEN.
COMPLETED = "completed"
INTERRUPTED = "interrupted"  # stopped by a signal; resumable from its checkpoint
DIVERGED = "diverged"  # a loss term went NaN/Inf
FAILED = "failed"  # refused config or data, or a crash
INCOMPLETE = "incomplete"
BROKEN = "broken"

# Exit codes of `regrun`, `regrun resume` and `regrun compare` (an interrupted run exits
# 128 + the signal's number when the signal reached this process; see jobs/signals.py).
EXIT_CODES = {COMPLETED: 0, FAILED: 2}
EXIT_OTHER = 1  # diverged, interrupted elsewhere, incomplete

# metrics.csv columns every run has (`test_*` and `val_*` figures come from the task).
EPOCH = "epoch"
STEP = "step"
TASK_LOSS = "train_task_loss"
PENALTY_TOTAL = "train_penalty_total"
TOTAL_LOSS = "train_total_loss"
EPOCH_TIME = "epoch_time_s"
SEED = "seed"


def penalty_column(target: str, kind: str) -> str:
    """`penalty.<target>.raw` or `penalty.<target>.weighted`."""
    return f"penalty.{target}.{kind}"


def lambda_column(target: str) -> str:
    """The λ in effect for a target (it changes under a schedule)."""
    return f"lambda.{target}"


def split_figure(split: str, figure: str) -> str:
    """`test_acc`, `val_mse`: a task figure measured on a split."""
    return f"{split}_{figure}"
