"""What a person watches: the resolved targets, training progress, the final summary.

Everything goes through rich's global console, which the logging handler in
conf/hydra/job_logging/rich.yaml shares, so log lines print above the progress bar.
Progress bars only draw on a terminal; elsewhere (CI, a Slurm log) the per-epoch log
line carries the same figures.

In a sweep each job is quiet (`quiet_job`): one line when it starts, one when it ends;
its tables and log lines go to its regrun.log only (the files hold the rest).
"""

import io
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console, RenderableType
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from regrun.console import LOG_WIDTH, shared_console
from regrun.layout import (
    COMPLETED,
    EPOCH,
    EPOCH_TIME,
    FINETUNE_EPOCHS,
    LAYER_SPARSITY,
    LEVEL,
    PRUNE_GLOBAL,
    PRUNE_SPARSITY,
    SCOPE,
    STRUCTURE_FIGURES,
    TASK_LOSS,
    TOTAL_LOSS,
    finetuned,
    penalty_column,
    sparsity_column,
    split_figure,
)
from regrun.measure.sparsity import threshold_key

log = logging.getLogger(__name__)
_QUIET = False  # inside quiet_job: tables to the log file, no progress bar


@contextmanager
def quiet_job(label: str | None) -> Iterator[Callable[[Mapping[str, Any]], None]]:
    """A sweep job's output on the console: `label` and "started" now, and one line with
    its status and headline figures when the run calls the function this yields with its
    summary. Meanwhile console log lines below WARNING are held back (regrun.log keeps
    them) and tables go to the log only. `label` None (a single run) changes nothing."""
    if label is None:
        yield lambda summary: None
        return
    shared_console().print(f"{label}: started", highlight=False, soft_wrap=True)
    with quiet_console():
        yield lambda summary: job_ended(label, summary)


def job_ended(label: str, summary: Mapping[str, Any]) -> None:
    """Print a sweep job's end on one line: `label`, its status and headline figures."""
    shared_console().print(f"{label}: {ended(summary)}", highlight=False, soft_wrap=True)  # one line, for grep


# The logger of a finished run's diagnostics (summary.json's warnings). A quiet sweep job
# names them on its end line instead, and the sweep's table lists them once.
DIAGNOSTICS = "regrun.diagnostics"


def _not_diagnostics(record: logging.LogRecord) -> bool:
    return record.name != DIAGNOSTICS


@contextmanager
def quiet_console() -> Iterator[None]:
    """While in the block, console log lines below WARNING and the runs' diagnostics are
    held back (the log files keep them), tables go to the log only and no progress bar shows."""
    global _QUIET
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, RichHandler)]
    levels = [h.level for h in handlers]
    for handler in handlers:
        handler.setLevel(max(handler.level, logging.WARNING))
        handler.addFilter(_not_diagnostics)
    _QUIET = True
    try:
        yield
    finally:
        _QUIET = False
        for handler, level in zip(handlers, levels):
            handler.setLevel(level)
            handler.removeFilter(_not_diagnostics)


def ended(summary: Mapping[str, Any]) -> str:
    """'completed in 3.1s · test acc 0.9672 · l1_act zero 0.66 · 1 warning (subgradient_l1)':
    a run's end in one line."""
    if summary["status"] != COMPLETED:
        return f"{summary['status']}: {summary.get('error', '')}"
    final = summary.get("final") or {}
    seconds = (summary.get("environment") or {}).get("wall_time_s")
    parts = [f"completed in {seconds:.1f}s" if seconds is not None else COMPLETED]
    parts += [f"{k.replace('_', ' ', 1)} {_fmt(v)}" for k, v in final.items() if k.startswith(("test_", "val_"))]
    names = dict.fromkeys(row["target"] for row in summary.get("targets") or [])
    zero = [sparsity_column(t, "zero_frac") for t in names] or [sparsity_column("weights", "zero_frac")]
    parts += [f"{key.split('.')[1]} zero {final[key]:.3f}" for key in zero if key in final]
    codes = [w["code"] for w in summary.get("warnings") or [] if isinstance(w, Mapping) and "code" in w]
    if codes:
        parts.append(f"{len(codes)} warning{'s' if len(codes) > 1 else ''} ({', '.join(codes)})")
    return " · ".join(parts)


def _show(renderable: RenderableType, console: Console) -> None:
    """Print a table; in a quiet sweep job, write it to the log file instead."""
    if not _QUIET:
        console.print(renderable)
        return
    buffer = io.StringIO()
    Console(file=buffer, width=LOG_WIDTH, color_system=None).print(renderable)
    log.info("\n%s", buffer.getvalue().rstrip())


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "×".join(map(str, value)) if all(isinstance(v, int) for v in value) else str(value)
    return "" if value is None else str(value)


def show_targets(rows: Sequence[Mapping[str, Any]], console: Console) -> None:
    """A table of the penalized tensors, one row each, printed before training."""
    if not rows:
        _show("[bold]regularization targets:[/] none (reg=none): the task loss alone is trained", console)
        return
    table = Table(title="regularization targets", title_justify="left")
    for column in ("target", "site", "penalty", "lambda", "reduction", "tensor", "shape", "numel"):
        table.add_column(column, justify="right" if column in ("lambda", "numel") else "left")
    for row in rows:
        table.add_row(*(_fmt(row[c]) for c in ("target", "site", "penalty", "lambda", "reduction", "tensor", "shape", "numel")))
    _show(table, console)


def show_groups(rows: Sequence[Mapping[str, Any]], console: Console) -> None:
    """A table of the optimizer's parameter groups, printed before training when the config
    names any (`optimizer.groups`): their parameters and the options each sets."""
    if all(row["group"] == "default" for row in rows):
        return
    options = list(dict.fromkeys(key for row in rows for key in ("lr", "weight_decay", *row["set"]) if key in row["options"]))
    table = Table(title="optimizer parameter groups", title_justify="left")
    for column in ("group", "parameters", "numel", *options):
        table.add_column(column, justify="left" if column in ("group", "parameters") else "right")
    for row in rows:
        # The options a group sets stand out; the others are the optimizer node's.
        cells = [f"[bold]{_fmt(row['options'][k])}" if k in row["set"] else _fmt(row["options"][k]) for k in options]
        table.add_row(row["group"], ", ".join(row["params"]), str(row["numel"]), *cells)
    console.print(table)


def breakdown(figures: Mapping[str, Any], target_names: Sequence[str]) -> str:
    """'task 0.231 · l1_act 0.0123 · total 0.243': the loss and its weighted penalties."""
    parts = [f"task {figures[TASK_LOSS]:.4g}"]
    parts += [f"{t} {figures[penalty_column(t, 'weighted')]:.4g}" for t in target_names]
    parts.append(f"total {figures[TOTAL_LOSS]:.4g}")
    return " · ".join(parts)


class RichReporter:
    """Progress bar per epoch showing the loss breakdown; one log line per epoch."""

    def __init__(self, epochs: int, target_names: Sequence[str], figures: Sequence[str], console: Console):
        self.epochs = epochs
        self.target_names = list(target_names)
        self.figures = list(figures)  # the task's: loss, acc / loss, r2, mae / ...
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}/" + str(epochs)), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("{task.fields[breakdown]}"),
            console=console, disable=_QUIET or not console.is_terminal,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> "RichReporter":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    @property
    def task(self) -> TaskID:
        """The epoch's bar (one exists from the first start_epoch)."""
        assert self._task is not None, "start_epoch comes first"
        return self._task

    def start_epoch(self, epoch: int, steps: int) -> None:
        """Start a fresh bar for the epoch."""
        if self._task is not None:
            self.progress.remove_task(self._task)
        self._task = self.progress.add_task("train", total=steps, epoch=epoch, breakdown="")

    def step(self, done: int, figures: Sequence[Mapping[str, float]]) -> None:
        """Move the bar and show the running loss breakdown (of the run: a group of one)."""
        self.progress.update(self.task, completed=done, breakdown=breakdown(figures[0], self.target_names))

    def end_epoch(self, label: str, row: Mapping[str, Any]) -> None:
        """Log the epoch's breakdown and test figures on one line."""
        self.progress.update(self.task, completed=self.progress.tasks[-1].total,
                             breakdown=breakdown(row, self.target_names))
        log.info("%s", epoch_line(row, self.epochs, self.target_names, self.figures))


def epoch_line(row: Mapping[str, Any], epochs: int, target_names: Sequence[str], figures: Sequence[str]) -> str:
    """'epoch 2/5  task 0.231 · l1 0.0123 · total 0.243 | test loss 0.25 acc 0.9301  (1.4s)':
    the breakdown and the task's `figures` of each split the row holds."""
    evaluated = "".join(_split_figures(row, split, figures) for split in ("val", "test"))
    return f"epoch {row[EPOCH]}/{epochs}  {breakdown(row, target_names)}{evaluated}  ({row[EPOCH_TIME]:.1f}s)"


def _split_figures(row: Mapping[str, Any], split: str, figures: Sequence[str]) -> str:
    """' | test loss 0.31 acc 0.912' when the row has the split's figures, else ''."""
    parts = [f"{name} {row[column]:.4g}" for name in figures if (column := split_figure(split, name)) in row]
    return f" | {split} {' '.join(parts)}" if parts else ""


class GroupReporter(RichReporter):
    """One progress bar for the members of a fused group, showing how many go on and the
    range of their total loss; each member's epochs are logged by `member(label)`."""

    def __init__(self, epochs: int, target_names: Sequence[str], figures: Sequence[str], size: int,
                 console: Console):
        super().__init__(epochs, target_names, figures, console)
        self.size = size

    def step(self, done: int, figures: Sequence[Mapping[str, float]]) -> None:
        """Move the bar; show the live members and their total losses."""
        totals = [f[TOTAL_LOSS] for f in figures]
        self.progress.update(self.task, completed=done, breakdown=f"{len(figures)}/{self.size} members · total "
                                                                    f"loss {min(totals):.4g}–{max(totals):.4g}")

    def end_epoch(self, label: str, row: Mapping[str, Any]) -> None:
        """Log the member's epoch on one line, named by `label` (the group's bar shows the progress)."""
        log.info("%s  %s", label, epoch_line(row, self.epochs, self.target_names, self.figures))


def show_summary(summary: Mapping[str, Any], console: Console) -> None:
    """The final loss breakdown and per-layer sparsity, as rich tables."""
    final, losses = summary["final"], summary["loss_breakdown"]
    table = Table(title=f"run summary ({summary['status']})", title_justify="left")
    for column in ("figure", "raw", "λ", "weighted"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    table.add_row("task loss (train)", "", "", _fmt(losses["task"]))
    for name, term in losses["penalties"].items():
        table.add_row(f"penalty {name}", _fmt(term["raw"]), _fmt(term["lambda"]), _fmt(term["weighted"]))
    table.add_row("[bold]total loss (train)", "", "", f"[bold]{_fmt(losses['total'])}")
    task = summary["task"]
    for split in ("val", "test"):
        for name, label in task["figures"].items():
            if (column := split_figure(split, name)) in final:
                bold = "[bold]" if column == task["headline"] else ""
                table.add_row(f"{bold}{split} {label}", "", "", f"{bold}{_fmt(final[column])}")
    _show(table, console)
    _show(_layer_table(summary[LAYER_SPARSITY]), console)


def _layer_table(sparsity: Mapping[str, Any]) -> Table:
    """Per layer: its output's sparsity on the test set and its weight's, side by side."""
    # The weight columns and the row keys they show, the first threshold's when there is one.
    weight_columns = {"w zero": "zero_frac"}
    if sparsity["thresholds"]:
        first = sparsity["thresholds"][0]
        weight_columns[f"|w|<{first:g}"] = threshold_key(first)
    weight_columns["w hoyer"] = "hoyer"
    columns = ["layer", "type", "targeted by", "act zero", "dead units", "act hoyer", *weight_columns,
               "w zero rows/cols", "could become"]
    table = Table(title="sparsity per layer (test set outputs; weight tensors)", title_justify="left",
                  caption="w zero rows/cols: fractions of the weight's all-zero rows (outputs) / columns (inputs); "
                          "of a convolution's filters / input channels / kernels. could become: its shape without "
                          "them", caption_justify="left")
    for column in columns:
        table.add_column(column, justify="left" if column in ("layer", "type", "targeted by") else "right")
    weights = {row["name"].removesuffix(".weight"): row for row in sparsity["weights"] if row["name"].endswith(".weight")}
    for name, act in sparsity["activations"].items():
        w = weights.get(name)
        targeted = act["targeted_by"] + (w["targeted_by"] if w else [])
        cells = [name, act["type"], ", ".join(targeted), f"{act['zero_frac']:.3f}",
                 f"{act['dead_units']}/{act['units']}", f"{act['hoyer']:.3f}"]
        cells += [f"{w[key]:.3f}" if w else "" for key in weight_columns.values()]
        structured = [w[key] for key in STRUCTURE_FIGURES if key in w] if w else []
        cells += [" / ".join(f"{f:.3f}" for f in structured),
                  "×".join(map(str, w["could_become"])) if w and "could_become" in w else ""]
        table.add_row(*cells)
    return table


def show_pruning(rows: Sequence[Mapping[str, Any]], headline: str, console: Console) -> None:
    """prune.json's rows as a table: the headline figure at each level, globally and per
    layer (one column per level); each cell with the sparsity it reached where that differs."""
    levels = sorted({row[LEVEL] for row in rows if row[LEVEL] > 0})
    table = Table(title=f"{headline} with the smallest weights zeroed (level: fraction of the scope's weights)",
                  title_justify="left")
    table.add_column(SCOPE)
    dense = next(row for row in rows if row[LEVEL] == 0)
    table.add_column(f"as trained ({dense[PRUNE_SPARSITY]:.3f} zero)", justify="right")
    for level in levels:
        table.add_column(f"{level:g}", justify="right")
    for scope in dict.fromkeys(row[SCOPE] for row in rows):
        by_level = {row[LEVEL]: row for row in rows if row[SCOPE] == scope}
        cells = [_fmt(dense[headline]) if scope == PRUNE_GLOBAL else ""]
        for level in levels:
            row = by_level.get(level)
            reached = f" ({row[PRUNE_SPARSITY]:.3f})" if row and abs(row[PRUNE_SPARSITY] - level) > 5e-4 else ""
            cells.append(f"{_fmt(row[headline])}{reached}" if row else "")
        table.add_row(scope, *cells)
        if scope == PRUNE_GLOBAL and (epochs := next((r[FINETUNE_EPOCHS] for r in by_level.values()
                                                      if FINETUNE_EPOCHS in r), None)):
            tuned = [by_level.get(level, {}).get(finetuned(headline)) for level in levels]
            table.add_row(f"{scope}, fine-tuned {epochs} epoch{'s' * (epochs != 1)}", "",
                          *["" if v is None else _fmt(v) for v in tuned])
    _show(table, console)
