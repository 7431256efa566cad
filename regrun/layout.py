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
    prune.json     with prune.at_end, or after `regrun prune`: the task's test figures with the
                   smallest weights zeroed at each sparsity level, globally and per layer
    regrun.log     the job's log (Hydra's job logging)
    .lock          held (flock) by the one process writing the run; names its pid and command
    .hydra/        Hydra's record of the job: config.yaml (the composed config), overrides.yaml
                   (the command line's overrides), hydra.yaml (Hydra's settings, the job number)
    tb/            TensorBoard's event files, with logger=tensorboard (its default dir), for a
                   run of its own (a sweep's job writes into the sweep's tb/, below)

A sweep's folder holds one run directory per job, and:

    summary.csv    one row per job (the sweep's summary)
    tradeoff.png   the trade-off plot of the sweep
    tradeoff_prune.png   its pruning curves, when some job has a prune.json
    tradeoff_density.png the firing densities of the units of the targeted activation modules
    mlruns/        MLflow's file store, with logger=mlflow and no tracking_uri (beside the runs);
                   `regrun compare` never reads its artifact copies as runs
    tb/            with logger=tensorboard: a folder per job named by its number and swept
                   values (0_l1.lambda=0.001), TensorBoard's runs; and the sweep's own events
                   (the HParams experiment, the trade-off plots, the summary table)
    .regrun_trackers.json   what the trackers' sweep callback leaves for the jobs: the
                   command line's overrides, MLflow's parent run
"""

from collections.abc import Iterable

CONFIG = "config.json"
TARGETS = "targets.json"
GROUPS = "groups.json"
METRICS = "metrics.csv"
STEPS = "steps.csv"
CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"
MODEL = "model.pt"
PRUNE = "prune.json"
LOG = "regrun.log"
LOCK = ".lock"
HYDRA = ".hydra"
HYDRA_CONFIG = "config.yaml"
HYDRA_OVERRIDES = "overrides.yaml"
HYDRA_SETTINGS = "hydra.yaml"
TENSORBOARD = "tb"
SWEEP_SUMMARY = "summary.csv"
TRADEOFF_PLOT = "tradeoff.png"
MLFLOW = "mlruns"

# summary.json's per-layer sparsity tables (thresholds, weights, activations), and the
# key of an activation row that holds each unit's firing density.
LAYER_SPARSITY = "sparsity"
DENSITY = "density"

# The keys of a prune.json row, besides the task's `test_<figure>`: the weights it prunes
# (`global`: all chosen weights under one threshold, else one layer alone), the fraction
# of them asked to be zero (0: the model as it is), and the fraction that is zero.
SCOPE = "scope"
PRUNE_GLOBAL = "global"
LEVEL = "level"
PRUNE_SPARSITY = "sparsity"
# A global row fine-tuned once pruned (prune.finetune_epochs): for how many epochs, and its
# figures after them, `finetuned_<figure>` (finetuned_test_acc, finetuned_sparsity).
FINETUNE_EPOCHS = "finetune_epochs"
FINETUNED = "finetuned_"

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
EXIT_SIGNAL = 128  # + the signal's number: 130 after Ctrl-C, 143 after SIGTERM
# What each exit code means, for `regrun`, `regrun -m`, `regrun resume`, `regrun prune` and
# `regrun compare` (the documentation's table is generated from this).
EXIT_MEANINGS = {
    str(EXIT_CODES[COMPLETED]): "completed (a sweep: every job completed; `compare`: the table was printed, broken runs included)",
    str(EXIT_OTHER): "diverged, interrupted by a signal sent to another process (a sweep's job), or incomplete",
    str(EXIT_CODES[FAILED]): "bad input or failed: a refused config, flag, path or run folder (another writer holds it), a damaged "
         "file, a write that failed",
    f"{EXIT_SIGNAL}+N": "stopped by signal N: 130 after Ctrl-C, 143 after SIGTERM; resumable",
}

# metrics.csv columns every run has (`test_*` and `val_*` figures come from the task).
EPOCH = "epoch"
STEP = "step"
TASK_LOSS = "train_task_loss"
PENALTY_TOTAL = "train_penalty_total"
TOTAL_LOSS = "train_total_loss"
EPOCH_TIME = "epoch_time_s"
# The families of columns named after a target or a module; `<prefix><name>.<figure>`.
PENALTY = "penalty."
LAMBDA = "lambda."
SPARSITY = "sparsity."

# Structured sparsity of a weight tensor (`sparsity.<parameter>.<figure>`): the fraction of
# all-zero rows and columns of a matrix (a Linear's outputs and inputs), and of all-zero
# filters (output channels), input channels and kernels of a convolution's weight.
STRUCTURE_FIGURES = ("zero_rows", "zero_cols", "zero_filters", "zero_channels", "zero_kernels")

# The config key of a run's seed (config.json, summary.json's environment); compare and the
# trade-off plot tell the seeds of a sweep apart by it.
SEED = "seed"


def penalty_column(target: str, kind: str) -> str:
    """`penalty.<target>.raw` or `penalty.<target>.weighted`."""
    return f"{PENALTY}{target}.{kind}"


def penalty_targets(columns: Iterable[str]) -> list[str]:
    """The targets that have a `penalty.<target>.raw` column, in the columns' order."""
    raw = ".raw"
    return [c[len(PENALTY):-len(raw)] for c in columns if c.startswith(PENALTY) and c.endswith(raw)]


def lambda_column(target: str) -> str:
    """The λ in effect for a target (it changes under a schedule)."""
    return f"{LAMBDA}{target}"


def sparsity_column(scope: str, figure: str) -> str:
    """`sparsity.<scope>.<figure>`: a sparsity figure (zero_frac, l0, ...) of a target, a
    module, or `weights` (every weight matrix pooled)."""
    return f"{SPARSITY}{scope}.{figure}"


def split_figure(split: str, figure: str) -> str:
    """`test_acc`, `val_mse`: a task figure measured on a split."""
    return f"{split}_{figure}"


def finetuned(figure: str) -> str:
    """A pruned model's figure after its fine-tuning: 'test_acc' → 'finetuned_test_acc'."""
    return f"{FINETUNED}{figure}"


def prune_column(level: float, figure: str) -> str:
    """`prune90_test_acc`: a figure of the model with 90% of its chosen weights zeroed globally."""
    return f"prune{100 * level:.4g}_{figure}"


def prune_plot(plot: str) -> str:
    """The file name of the pruning curves beside a plot: 'tradeoff.png' → 'tradeoff_prune.png'."""
    return _beside(plot, "prune")


def density_plot(plot: str) -> str:
    """The file name of the firing-density histograms beside a plot: 'tradeoff.png' → 'tradeoff_density.png'."""
    return _beside(plot, "density")


def _beside(plot: str, kind: str) -> str:
    stem, dot, suffix = plot.rpartition(".")
    return f"{stem}_{kind}.{suffix}" if dot else f"{plot}_{kind}"
