"""The comparison of runs behind `regrun compare` and the sweep summary.

One row per run (or per group of runs that differ only by seed): the config values that
differ between the runs, then the final figures: the test loss and the task's headline
figure (accuracy, R², PSNR: whatever the runs' tasks name in summary.json), the task's
other figures, the same on the validation split, task loss, each penalty, headline
sparsity. Printed as a rich table, CSV, Markdown or JSON, with an optional PNG of the
trade-off between the headline figure and sparsity (regrun/analysis/plots.py).

Runs that did not complete are listed with their status and error; their figures, if
any, are shown as they stand but never enter a mean over seeds or a plot.
"""

import csv
import io
import json
import os
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from regrun.analysis.runs import (
    LAMBDA_KEY,
    MISSING,
    Run,
    canonical,
    config_values,
    differing_keys,
    is_finite,
    natural_key,
    prune_figures,
    short_names,
)
from regrun.console import format_value
from regrun.errors import RegrunError, choices, is_number
from regrun.layout import (
    PENALTY,
    SEED,
    SPARSITY,
    STRUCTURE_FIGURES,
    TASK_LOSS,
    penalty_column,
    sparsity_column,
    split_figure,
)

FORMATS = ("table", "csv", "markdown", "json")
SPLITS = ("test", "val")  # the task's figures on each split the runs evaluate, in this order
BLANK = 3  # the rank of an empty cell in a sort: after numbers (0), text (1) and the rest (2)
LISTED_RUNS = 4  # a grouped row names this many of its runs at most


@dataclass
class Cell:
    """A figure in the table: a run's value, or the mean over seeds, with its std and Δ."""

    value: float | None
    std: float | None = None
    delta: float | None = None


@dataclass
class Row:
    """One line of the comparison: a run, or the runs of one config over several seeds."""

    label: str
    runs: list[Run]
    config: dict[str, Any]
    figures: dict[str, Cell]

    @property
    def status(self) -> str:
        """The runs' status, or how many have each ('2 completed, 1 broken')."""
        counts = Counter(run.status for run in self.runs)
        return self.runs[0].status if len(counts) == 1 else ", ".join(f"{n} {s}" for s, n in counts.items())

    @property
    def n(self) -> int:
        """How many completed runs the row's means are over (grouped rows)."""
        return sum(run.completed for run in self.runs)


@dataclass
class Comparison:
    """The rows and columns of `regrun compare`, before any output format."""

    config_keys: list[str]
    figure_keys: list[str]
    rows: list[Row]
    labels: dict[Path, str]
    grouped: bool = False
    baseline: Row | None = None
    short: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.short = short_names(self.config_keys)

    @property
    def columns(self) -> list[str]:
        """Every column's name, as --sort takes them."""
        return ["run", *self.config_keys, *(["n"] if self.grouped else []), "status", *self.figure_keys]

    def value(self, row: Row, column: str) -> Any:
        """The row's plain value in a column (a figure's value or mean)."""
        if column in self.config_keys:
            return row.config[column]
        if column in self.figure_keys:
            return row.figures[column].value
        return {"run": row.label, "n": row.n, "status": row.status}[column]

    def sort(self, column: str | None = None, descending: bool = False) -> None:
        """Sort by a column, blanks last; by default by the config columns (the seed last, so
        that the seeds of a config are next to each other), then by run."""
        if column is None:
            keys = sorted(self.config_keys, key=lambda k: k == SEED)
            self.rows.sort(key=lambda r: ([_order(self.value(r, k)) for k in keys], natural_key(r.label)))
            return
        keyed = [(_order(self.value(row, column)), row) for row in self.rows]
        present = sorted((pair for pair in keyed if pair[0][0] != BLANK), key=lambda pair: pair[0], reverse=descending)
        self.rows = [row for _, row in present] + [row for key, row in keyed if key[0] == BLANK]


def _order(value: Any) -> tuple[int, Any]:
    """Sort key within a column: numbers by value, then text, then anything else as text."""
    if is_finite(value):
        return 0, value
    if isinstance(value, str):
        return 1, natural_key(value)
    if value is MISSING or isinstance(value, float):  # a float here is a diverged run's NaN or inf
        return BLANK, ""
    return 2, canonical(value)


def figure_columns(runs: Sequence[Run]) -> list[str]:
    """The final figures to show: the task's, task loss, each penalty, headline sparsity.

    The task's: per split, its loss, the runs' headline figures, then any other figure of
    the split; the headline figure of the runs pruned globally at each level (prune.json). Headline sparsity: all weights, each target, and each module whose outputs
    a target penalizes; only columns that some run has.
    """
    present = dict.fromkeys(key for run in runs for key in run.final)
    targets = list(dict.fromkeys(name for run in runs for name in run.target_names))
    modules = dict.fromkeys(m for run in runs for m in run.targeted_modules)
    headlines = [h.removeprefix(split_figure("test", "")) for h in dict.fromkeys(run.headline for run in runs) if h]
    wanted = []
    for split in SPLITS:
        wanted += [split_figure(split, name) for name in ("loss", *headlines)]
        wanted += [key for key in present if key.startswith(split_figure(split, ""))]
    wanted += [key for run in runs for key in prune_figures(run.pruning, run.headline)]
    wanted.append(TASK_LOSS)
    for target in targets:
        wanted += [penalty_column(target, "raw"), penalty_column(target, "weighted")]
    for prefix in ["weights", *targets]:
        wanted += [key for key in present if key.startswith(sparsity_column(prefix, ""))]
    wanted += [sparsity_column(module, "zero_frac") for module in modules]
    wanted += [key for key in present if key.startswith(SPARSITY) and key.rsplit(".", 1)[-1] in STRUCTURE_FIGURES]
    return [key for key in dict.fromkeys(wanted) if key in present]


def run_labels(runs: Sequence[Run]) -> dict[Path, str]:
    """Each run's path relative to the folder the runs share ('0', '1', ... for a sweep)."""
    common = Path(os.path.commonpath([run.path.parent for run in runs]))
    return {run.path: str(run.path.relative_to(common)) for run in runs}


def compare_runs(runs: Sequence[Run], group_seeds: bool = False, baseline: str | None = None) -> Comparison:
    """The comparison table of `runs`: one row per run or, with `group_seeds`, per config."""
    labels = run_labels(runs)
    keys = differing_keys(runs)
    figures = figure_columns(runs)
    if group_seeds:
        keys = [key for key in keys if key != SEED]
        rows = [_group_row(group, keys, figures, labels) for group in _seed_groups(runs, keys)]
    else:  # each run's figures as they stand, completed or not: its status says which
        rows = [Row(labels[run.path], [run], config_values(run, keys),
                    {f: Cell(_figure(run, f)) for f in figures}) for run in runs]
    comparison = Comparison(keys, figures, rows, labels, grouped=group_seeds)
    if baseline is not None:
        _apply_baseline(comparison, _find_baseline(comparison, baseline))
    return comparison


def _figure(run: Run, key: str) -> float | None:
    value = run.final.get(key)
    return float(value) if is_number(value) else None


def _seed_groups(runs: Sequence[Run], keys: Sequence[str]) -> list[list[Run]]:
    """Runs with equal values in `keys` (the differing keys but the seed), in first-seen order.

    A run without a config (broken before Hydra wrote one) stays on its own.
    """
    groups: dict[Any, list[Run]] = {}
    for run in runs:
        key = canonical(config_values(run, keys)) if run.config else str(run.path)
        groups.setdefault(key, []).append(run)
    return list(groups.values())


def _group_row(runs: list[Run], keys: Sequence[str], figures: Sequence[str], labels: dict[Path, str]) -> Row:
    """A row for runs that differ only by seed: mean and sample std over the completed ones."""
    completed = [run for run in runs if run.completed]
    cells = {}
    for figure in figures:
        values = [v for run in completed if is_finite(v := _figure(run, figure))]
        cells[figure] = Cell(statistics.fmean(values) if values else None,
                             statistics.stdev(values) if len(values) > 1 else None)
    names = [labels[run.path] for run in runs]
    if len(names) > LISTED_RUNS:  # the JSON and CSV `path` still list every run
        names = [*names[:2], "…", f"{names[-1]} ({len(names)} runs)"]
    return Row(", ".join(names), runs, config_values(runs[0], keys), cells)


def _find_baseline(comparison: Comparison, wanted: str) -> Row:
    """The row holding the run named by --baseline (its path, or its label in the table)."""
    path = Path(wanted).resolve()
    for row in comparison.rows:
        if any(run.path == path or comparison.labels[run.path] == wanted for run in row.runs):
            if not any(is_finite(cell.value) for cell in row.figures.values()):
                raise RegrunError(f"--baseline {wanted} has no figures (status {row.status})")
            return row
    raise RegrunError(f"--baseline {wanted} is not among the runs; give one of: {choices(comparison.labels.values())}")


def _apply_baseline(comparison: Comparison, base: Row) -> None:
    comparison.baseline = base
    for row in comparison.rows:
        for key, cell in row.figures.items():
            reference = base.figures[key].value
            if cell.value is not None and reference is not None:
                cell.delta = cell.value - reference


def figure_header(column: str) -> str:
    """What the table calls a figure: 'sparsity.act1.zero_frac' → 'act1 zero', 'test_acc' → 'test acc'."""
    if match := re.fullmatch(rf"{re.escape(PENALTY)}(.+)\.(raw|weighted)", column):
        return f"{match[1]} {match[2]}"
    if match := re.fullmatch(rf"{re.escape(SPARSITY)}(.+)\.zero_frac", column):
        return f"{match[1]} zero"
    if match := re.fullmatch(rf"{re.escape(SPARSITY)}(.+)\.below_(.+)", column):
        return f"{match[1]} <{match[2]}"
    if (match := re.fullmatch(rf"{re.escape(SPARSITY)}(.+)\.zero_(\w+)", column)) and \
            match[0].rsplit(".", 1)[-1] in STRUCTURE_FIGURES:  # 'fc1.weight zero rows'
        return f"{match[1]} zero {match[2]}"
    if match := re.fullmatch(rf"{re.escape(SPARSITY)}(.+)\.(l0|dead_frac|train_dead_frac)", column):
        return f"{match[1]} {SAE_HEADERS[match[2]]}"
    return column.replace("train_", "").replace("_", " ")


# A sparse code's figures (regrun/measure/evaluation.py `headline`, measure/firing.py `window_dead`).
SAE_HEADERS = {"l0": "L0", "dead_frac": "dead", "train_dead_frac": "dead (train)"}


# What the short headers mean: (a header's last word, its meaning), said under a table that has one.
HEADER_NOTES = (("zero", "zero: fraction exactly 0"), ("<", "<t: fraction of |w| below t"),
                ("raw", "raw, weighted: a penalty before and after λ"), ("L0", "L0: non-zero outputs per sample"),
                ("dead", "dead: fraction of units zero on every test sample"),
                ("(train)", "dead (train): fraction that fired on no training sample in the last "
                            "sparsity.dead_window steps"),
                ("rows", "zero rows, cols: fraction of a matrix's rows (outputs) or columns (inputs) all 0"),
                ("filters", "zero filters, channels, kernels: fraction of a kernel's filters, input channels "
                            "or (out, in) kernels all 0"))


def header_note(headers: Sequence[str]) -> str:
    """The legend of the short headers a table shows."""
    words = {h.split()[-1] if " " in h else h for h in headers} | {h.split()[-1][0] for h in headers if " " in h}
    return " · ".join(note for word, note in HEADER_NOTES if word in words)


def resolve_column(name: str, columns: Sequence[str], what: str) -> str:
    """A column named in full, as the table heads it, or by a unique dotted suffix ('lambda')."""
    if name in columns:
        return name
    matches = [c for c in columns if figure_header(c) == name] or [c for c in columns if c.endswith("." + name)]
    if len(matches) == 1:
        return matches[0]
    problem = f"'{name}' is ambiguous ({', '.join(matches)})" if matches else f"unknown column '{name}'"
    raise RegrunError(f"{what}: {problem}; allowed: {choices(columns)}")


def is_fraction(column: str) -> bool:
    """Whether a figure is a fraction in [0, 1] (accuracy, sparsity), shown to 4 decimals."""
    return (column.startswith(SPARSITY) and not column.endswith(".l0")) or any(
        column == split_figure(split, "acc") for split in SPLITS)


def _cell_text(column: str, cell: Cell, is_baseline: bool) -> str:
    if cell.value is None:
        return ""
    fraction = is_fraction(column)
    text = f"{cell.value:.4f}" if fraction else format_value(cell.value)
    if cell.std is not None:
        text += f" ± {cell.std:.4f}" if fraction else f" ± {cell.std:.2g}"
    if cell.delta is not None and not is_baseline:
        text += f" ({cell.delta:+.4f})" if fraction else f" ({cell.delta:+.3g})"
    return text


def display_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Headers and cells as people read them: short config names, means ± std, (Δ)."""
    headers = [comparison.short.get(c) or figure_header(c) for c in comparison.columns]
    rows = []
    for row in comparison.rows:
        cells = [row.label, *(format_value(row.config[k]) for k in comparison.config_keys)]
        cells += [str(row.n)] if comparison.grouped else []
        cells.append(row.status)
        cells += [_cell_text(f, row.figures[f], row is comparison.baseline) for f in comparison.figure_keys]
        rows.append(cells)
    return headers, rows


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _title(comparison: Comparison) -> str:
    title = _count(sum(len(row.runs) for row in comparison.rows), "run")
    if comparison.grouped:
        title += f" in {_count(len(comparison.rows), 'config')} (mean ± sample std over the completed seeds; n = how many)"
    if comparison.baseline is not None:
        title += f"; (Δ) against {comparison.baseline.label}"
    return title


def _numeric(comparison: Comparison, column: str) -> bool:
    return column in comparison.figure_keys or column == "n" or (
        column in comparison.config_keys and all(is_finite(r.config[column]) or r.config[column] is MISSING
                                                  for r in comparison.rows))


def _header_lines(header: str) -> str:
    """One word a line (a config key breaks after its dots), so that a header is as wide as
    its longest word; otherwise rich narrows the widest columns and folds names mid-word."""
    return re.sub(r"\.(?=[a-z_])", ".\n", header).replace(" ", "\n")


def column_priority(comparison: Comparison) -> list[str]:
    """The columns in the order a narrow table keeps them: the run, the components that tell
    mixed runs apart (model.name, dataset.name, ...), the headline figures and the test loss,
    what a sweep varies (λ first, then the seed), each target's zero fraction (the trade-off),
    the other config values, the status when some run did not complete, the seeds' count, the
    headline figure of the pruned models, then the other figures."""
    runs = [run for row in comparison.rows for run in row.runs]
    headlines = {run.headline for run in runs}
    targets = dict.fromkeys(name for run in runs for name in run.target_names)
    names = [k for k in comparison.config_keys if k.rsplit(".", 1)[-1] == "name"]
    lambdas = [k for k in comparison.config_keys if LAMBDA_KEY.fullmatch(k)]
    pruned = {key for run in runs for key in prune_figures(run.pruning, run.headline)}
    incomplete = any(not run.completed for run in runs)
    ordered = ["run", *names, *[f for f in comparison.figure_keys if f in headlines],
               *[f for f in comparison.figure_keys if f == split_figure("test", "loss")],
               *lambdas, *([SEED] if SEED in comparison.config_keys else []),
               *[sparsity_column(t, "zero_frac") for t in targets], *comparison.config_keys,
               *(["status"] if incomplete else []), *(["n"] if comparison.grouped else []),
               *[f for f in comparison.figure_keys if f in pruned], *comparison.figure_keys]
    return [c for c in dict.fromkeys(ordered) if c in comparison.columns]


def table_columns(comparison: Comparison, width: int, wanted: Sequence[str] | None = None) -> list[str]:
    """The columns the table shows: `wanted` (resolved as --sort resolves a column), or as
    many as fit in `width` characters, by `column_priority`, in the comparison's order."""
    if wanted:
        chosen = ["run", *(resolve_column(name, comparison.columns, "--columns") for name in wanted)]
        return [c for c in comparison.columns if c in chosen]
    headers, rows = display_rows(comparison)
    widths = {}
    for i, column in enumerate(comparison.columns):
        longest = max([len(word) for word in _header_lines(headers[i]).splitlines()] +
                      [len(cells[i]) for cells in rows], default=1)
        widths[column] = longest + 3  # a space either side and a border
    chosen, used = [], 1
    for column in column_priority(comparison):
        if used + widths[column] <= width or column == "run":
            chosen.append(column)
            used += widths[column]
    return [c for c in comparison.columns if c in chosen]


NAMED_HIDDEN = 12  # the columns left out of a table named below it, at most (the CSV's header has them all)


def render_table(comparison: Comparison, console: Console, columns: Sequence[str] | None = None) -> None:
    """The comparison as a rich table of the `columns` asked for, else of those that fit the
    console (the others are named below it), then one line per run that did not complete
    and one per warning of the runs' diagnostics (naming every run that has it)."""
    headers, rows = display_rows(comparison)
    shown = table_columns(comparison, console.width, columns)
    index = [comparison.columns.index(c) for c in shown]
    table = Table(title=_title(comparison), title_justify="left",
                  caption=header_note([headers[i] for i in index]), caption_justify="left")
    for i in index:
        table.add_column(_header_lines(headers[i]), overflow="fold",
                         justify="right" if _numeric(comparison, comparison.columns[i]) else "left")
    for row, cells in zip(comparison.rows, rows):
        style = None if all(run.completed for run in row.runs) else "yellow"
        table.add_row(*(escape(cells[i]) for i in index), style=style)
    console.print(table)
    if hidden := [headers[i] for i, c in enumerate(comparison.columns) if c not in shown]:
        named = ", ".join(hidden[:NAMED_HIDDEN]) + (", …" if len(hidden) > NAMED_HIDDEN else "")
        console.print(f"{len(hidden)} more columns: {escape(named)}; every column: --format csv, "
                      "or choose with --columns COL,COL", highlight=False)
    runs = [run for row in comparison.rows for run in row.runs]
    for run in (run for run in runs if not run.completed):
        console.print(f"[yellow]{escape(comparison.labels[run.path])}: {escape(run.status)}[/]"
                      f"{escape(': ' + run.error) if run.error else ''}", highlight=False)
    warned: dict[str, list[str]] = {}  # a warning → the runs that have it, each text once
    for run in runs:
        for warning in run.warnings:
            warned.setdefault(warning, []).append(comparison.labels[run.path])
    for warning, labels in warned.items():
        console.print(f"[yellow]{escape(', '.join(dict.fromkeys(labels)))}: warning:[/] {escape(warning)}",
                      highlight=False)


def render_markdown(comparison: Comparison) -> str:
    """The comparison as a GitHub-flavoured Markdown table, numbers right-aligned."""
    headers, rows = display_rows(comparison)
    align = ["---:" if _numeric(comparison, c) else ":---" for c in comparison.columns]
    lines = [headers, align, *rows]
    return "\n".join("| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in lines) + "\n"


def records(comparison: Comparison) -> list[dict[str, Any]]:
    """One flat record per row for scripts: full column names, figures as plain numbers,
    `<figure>.std` over seeds and `<figure>.delta` against the baseline where asked."""
    out = []
    for row in comparison.rows:
        paths = [str(run.path) for run in row.runs]
        record = {"run": row.label, "path": paths if comparison.grouped else paths[0], **row.config}
        if comparison.grouped:
            record["n"] = row.n
        errors = [f"{comparison.labels[r.path]}: {r.error}" if comparison.grouped else r.error
                  for r in row.runs if r.error and not r.completed]
        record |= {"status": row.status, "error": "; ".join(errors) or None,
                   "warnings": "; ".join(w for r in row.runs for w in r.warnings) or None}
        for key, cell in row.figures.items():
            record[key] = cell.value
            if comparison.grouped:
                record[f"{key}.std"] = cell.std
            if comparison.baseline is not None:
                record[f"{key}.delta"] = cell.delta
        out.append(record)
    return out


def render_csv(comparison: Comparison) -> str:
    """The records as CSV; a list (a path list, model.hidden) is written as JSON."""
    rows = records(comparison)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in row.items()} for row in rows)
    return out.getvalue()


def render_json(comparison: Comparison) -> str:
    """The records as a JSON list; NaN and infinities (a diverged run's) become null."""
    clean = [{k: None if isinstance(v, float) and not is_finite(v) else v for k, v in row.items()}
             for row in records(comparison)]
    return json.dumps(clean, indent=2, default=str) + "\n"
