"""mkdocs hook: the reference pages' tables, rendered from regrun's own registries and schemas
at build time, so that they cannot go stale.

A page asks for a table with a line of its own, `<!-- generated: NAME -->`; NAME is one of
`GENERATORS` below. An unknown NAME fails the build (`mkdocs build --strict` runs in CI).
"""

import ast
import contextlib
import dataclasses
import inspect
import io
import json
import re
import subprocess
import sys
import textwrap
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # this checkout's regrun, whatever is installed

MARKER = re.compile(r"^<!-- generated: ([a-z_]+) -->$", re.MULTILINE)


def _cell(text: object) -> str:
    """A value as a Markdown table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _table(head: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _code(value: object) -> str:
    return f"`{value}`" if value not in ("", None) else ""


# ---------------------------------------------------------------- penalties


def penalties() -> str:
    """Every registered penalty: its formula, kind, options and proximal operator."""
    from regrun.components.penalties import PENALTIES

    rows = []
    for name in sorted(PENALTIES, key=list(PENALTIES).index):
        p = PENALTIES[name]
        options = ", ".join(f"`{k}` in [{lo:g}, {hi:g}]" for k, (lo, hi) in p.options.items())
        doc = (inspect.getdoc(p.fn) or "").split("\n\n")[0]
        rows.append([f"`{name}`", p.formula, doc, "yes" if p.additive else "no",
                     "parameters only" if p.parameter_only else "parameters and activations",
                     options, "`proximal: true`" if p.prox is not None else ""])
    return _table(["penalty", "formula", "definition (its docstring)", "additive", "on", "options", "proximal step"],
                  rows)


# ---------------------------------------------------------------- diagnostics


def diagnostics() -> str:
    """Every warning code and when it fires (regrun.measure.diagnostics.CODES)."""
    from regrun.measure import diagnostics as d

    rows = [[f"`{code}`", when] for code, when in d.CODES.items()]
    thresholds = [(name, getattr(d, name)) for name in dir(d) if name.isupper() and isinstance(getattr(d, name), float)]
    consts = ", ".join(f"`{name}` = {value:g}" for name, value in sorted(thresholds))
    return _table(["code", "when"], rows) + f"\n\nThe thresholds, as `regrun/measure/diagnostics.py` sets them: {consts}."


# ---------------------------------------------------------------- run directory


def _docstring_rows(doc: str) -> Iterator[tuple[str, str]]:
    """The `    name   description` rows of layout.py's docstring, continuation lines joined."""
    name, text = None, []
    for line in doc.splitlines():
        m = re.match(r"^    (\S+)\s{2,}(.*)$", line)
        if m:
            if name:
                yield name, " ".join(text)
            name, text = m.group(1), [m.group(2)]
        elif name and line.startswith("     ") and line.strip():
            text.append(line.strip())
        elif name:
            yield name, " ".join(text)
            name, text = None, []
    if name:
        yield name, " ".join(text)


def _layout_names() -> dict[str, str]:
    from regrun import layout

    return {value: key for key, value in vars(layout).items() if key.isupper() and isinstance(value, str)}


def run_directory() -> str:
    """The files of a run directory and of a sweep folder, from regrun/layout.py."""
    from regrun import layout

    doc = layout.__doc__ or ""
    run_part, _, sweep_part = doc.partition("A sweep's folder")
    names = _layout_names()
    out = []
    for title, part in (("A run directory", run_part), ("A sweep folder, besides its runs", sweep_part)):
        rows = [[f"`{f}`", f"`layout.{names[f.rstrip('/')]}`" if f.rstrip("/") in names else "", text]
                for f, text in _docstring_rows(part)]
        out += [f"**{title}**", "", _table(["file", "constant", "contents"], rows), ""]
    return "\n".join(out)


def columns() -> str:
    """metrics.csv's columns: the fixed ones and the families named after a target or module."""
    from regrun import layout

    fixed = [(layout.EPOCH, "the epoch (1-based)"), (layout.TASK_LOSS, "mean task loss over the epoch's steps"),
             (layout.PENALTY_TOTAL, "mean Σ λ·penalty over the epoch's steps"),
             (layout.TOTAL_LOSS, "mean total loss (task + penalties)"), (layout.EPOCH_TIME, "the epoch's wall time")]
    families = [
        (layout.penalty_column("<target>", "raw"), "the target's penalty before λ"),
        (layout.penalty_column("<target>", "weighted"), "λ · the penalty"),
        (layout.lambda_column("<target>"), "the λ in effect at the epoch's last step (schedules)"),
        (layout.split_figure("test", "<figure>"), "a task figure on the test split (`test_loss`, `test_acc`, ...)"),
        (layout.split_figure("val", "<figure>"), "the same on the validation split, with `dataset.val_size`"),
        (layout.sparsity_column("<scope>", "<figure>"),
         "a sparsity figure of a target, a module or `weights` (zero_frac, below_<t>, ...)"),
        (layout.prune_column(0.9, "<figure>"), "compare's column: a figure with 90% of the weights pruned globally"),
    ]
    rows = [[f"`{c}`", what] for c, what in fixed + families]
    structure = ", ".join(f"`{f}`" for f in layout.STRUCTURE_FIGURES)
    statuses = ", ".join(f"`{s}`" for s in (layout.COMPLETED, layout.INTERRUPTED, layout.DIVERGED, layout.FAILED))
    readers = ", ".join(f"`{s}`" for s in (layout.INCOMPLETE, layout.BROKEN))
    return (_table(["column", "what"], rows)
            + f"\n\nStructured sparsity of a weight tensor (`sparsity.<parameter>.<figure>`): {structure}."
            + f"\n\nA run's `status` in summary.json: {statuses}; a reader adds {readers} for folders without a"
            " readable summary.")


def exit_codes() -> str:
    """The exit codes, from regrun/layout.py."""
    from regrun import layout

    statuses: dict[str, list[str]] = {}
    for status, code in layout.EXIT_CODES.items():
        statuses.setdefault(str(code), []).append(f"`{status}`")
    rows = [[f"`{code}`", ", ".join(statuses.get(code, [])), meaning] for code, meaning in layout.EXIT_MEANINGS.items()]
    return _table(["code", "status", "meaning"], rows)


# ---------------------------------------------------------------- config


def _comments(cls: type) -> dict[str, str]:
    """The comment of each field of a dataclass: the `#` lines just above it and the one beside it."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    found = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            i = node.lineno - 1
            above = []
            j = i - 1
            while j >= 0 and lines[j].strip().startswith("#"):
                above.insert(0, lines[j].strip().lstrip("# "))
                j -= 1
            beside = lines[node.end_lineno - 1].partition("  # ")[2] if node.end_lineno else ""
            found[node.target.id] = " ".join([*above, beside]).strip()
    return found


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return _code(_yaml(f.default))
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        return _code(_yaml(value)) if not dataclasses.is_dataclass(value) else ""
    return "required"


def _yaml(value: object) -> str:
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, typing.Mapping):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}" if value else "{}"
    return str(value)


def _node_rows(prefix: str, cls: type, seen: set[type]) -> Iterator[list[str]]:
    from regrun.schema import describe, key_of

    hints = typing.get_type_hints(cls, include_extras=True)
    notes = _comments(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if f.metadata.get("options"):
            yield [f"`{prefix}<option>`", "the component's options (below)", "", notes.get(f.name, "")]
            continue
        if f.metadata.get("flatten"):
            yield from _node_rows(prefix, hint, seen)
            continue
        key = prefix + key_of(f)
        inner = _dataclass_of(hint)
        mapping = _mapping_of(hint)
        if inner is not None and inner not in seen:
            yield [f"`{key}`", "a mapping (its keys below)" if inner else "", _default(f), notes.get(f.name, "")]
            yield from _node_rows(key + ".", inner, seen | {inner})
        elif mapping is not None and mapping not in seen:
            yield [f"`{key}`", "a mapping of names to entries", _default(f), notes.get(f.name, "")]
            yield from _node_rows(key + ".<name>.", mapping, seen | {mapping})
        else:
            yield [f"`{key}`", describe(hint), _default(f), notes.get(f.name, "")]


def _dataclass_of(hint: Any) -> type | None:
    args = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_origin(hint) in (
        typing.Union, __import__("types").UnionType) else [hint]
    found = [a for a in args if dataclasses.is_dataclass(a) and isinstance(a, type)]
    return found[0] if found else None


def _mapping_of(hint: Any) -> type | None:
    if typing.get_origin(hint) is dict:
        value = typing.get_args(hint)[1]
        return value if dataclasses.is_dataclass(value) and isinstance(value, type) else None
    return None


def config_keys() -> str:
    """Every key of a run's config, from the settings dataclasses `schema.parse` reads it with."""
    from regrun.jobs.settings import RunSettings

    rows = list(_node_rows("", RunSettings, {RunSettings}))
    return _table(["key", "allowed", "default", "note (from the source)"], rows)


def _options(builder: Callable[..., Any], positional: int) -> list[str]:
    from regrun.schema import describe, option_hints

    try:
        params = list(inspect.signature(builder).parameters.values())[positional:]
        hints = option_hints(builder)
    except (TypeError, ValueError):
        return ["(any)"]
    out = []
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in ("params", "dims", "x"):
            continue
        allowed = describe(hints[p.name]) if p.name in hints else ""
        default = "" if p.default is inspect.Parameter.empty else f" = `{_yaml(p.default)}`"
        out.append(f"`{p.name}`{default} ({allowed})" if allowed else f"`{p.name}`{default}")
    return out or ["none"]


def components() -> str:
    """Each registry's entries and the options their builders take (their signatures are the schema)."""
    from regrun.components.datasets import DATASETS
    from regrun.components.models import MODELS
    from regrun.components.optimizers import OPTIMIZERS
    from regrun.components.tasks import TASKS

    rows = [["`model.name`", f"`{n}`", "; ".join(_options(MODELS[n], 2))] for n in MODELS]
    rows += [["`dataset.name`", f"`{n}`", "; ".join(_options(DATASETS[n].open, 0))] for n in DATASETS]
    rows += [["`optimizer.name`", f"`{n}`", "; ".join(_options(OPTIMIZERS[n], 1))] for n in OPTIMIZERS]
    rows += [["`task`", f"`{n}`", ", ".join(f"`{f}`" for f in TASKS[n].figures) + f" (headline `{TASKS[n].headline}`)"]
             for n in TASKS]
    return _table(["key", "entry", "options (task: figures)"], rows)


# ---------------------------------------------------------------- command line


def _help(main: Callable[[list[str]], Any], argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main(argv)
    return out.getvalue()


def _argparse_table(parser: Any) -> str:
    rows = []
    for action in parser._actions:
        if action.dest == "help":
            continue
        flags = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.metavar or action.dest}`"
        choices = f" (one of {', '.join(map(str, action.choices))})" if action.choices else ""
        default = f" (default: `{action.default}`)" if action.default not in (None, False) and action.option_strings else ""
        rows.append([flags, action.metavar or "", f"{action.help or ''}{choices}{default}"])
    return _table(["option", "value", "what it does"], rows)


def compare_options() -> str:
    """`regrun compare`'s options and its --help, from its argparse parser."""
    from regrun.cli import compare

    p = compare.parser()
    return _argparse_table(p) + "\n\n```text\n$ regrun compare --help\n" + p.format_help() + "```"


def prune_options() -> str:
    """`regrun prune`'s options and its --help."""
    from regrun.cli import prune

    p = prune.parser()
    return _argparse_table(p) + "\n\n```text\n$ regrun prune --help\n" + p.format_help() + "```"


def resume_help() -> str:
    """`regrun resume --help`."""
    from regrun.cli import resume

    return "```text\n$ regrun resume --help\n" + _help(resume.main, ["--help"]) + "```"


def regrun_help() -> str:
    """`regrun --help`: the config groups and the registered components (Hydra's help, in a subprocess)."""
    env = {"PYTHONPATH": str(ROOT), "COLUMNS": "100", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "regrun", "--help"], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120, check=True)
    return "```text\n$ regrun --help\n" + done.stdout + "```"


# ---------------------------------------------------------------- figures of real runs

RESULTS = ROOT / "docs" / "results"  # written by bench/doc_figures.py and bench/thread_figures.py


def _results(name: str, bench: str) -> Any:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python {bench} --data-root ../shared/data`")
    return json.loads(path.read_text())


def _figure(value: object, digits: int = 4) -> str:
    return f"{value:.{digits}g}" if isinstance(value, int | float) else ""


def thread_figures() -> str:
    """Each thread preset's figures from docs/results/thread_figures.json, beside the thread's printed ones."""
    from regrun.layout import EPOCH

    rows = []
    for preset, result in sorted(_results("thread_figures", "bench/thread_figures.py").items(),
                                 key=lambda item: item[1]["thread"]):
        printed = result["thread_printed"]
        shown = [e for e in result["epochs"] if str(e[EPOCH]) in printed] or result["epochs"][-1:]
        for e in shown:
            thread = printed.get(str(e[EPOCH]), {})
            test = ", ".join(f"{k.removeprefix('test_')} {_figure(v)}" for k, v in e["test"].items())
            rows.append([result["thread"], f"`{preset}`", e[EPOCH], _figure(e["loss"], 5), _figure(e["penalty"], 4),
                         _figure(thread.get("loss"), 5), _figure(thread.get("l1"), 4), test,
                         ", ".join(f"`{w}`" for w in result.get("warnings", [])) or "none"])
    return _table(["thread", "preset", "epoch", "regrun loss", "regrun penalty", "thread's loss", "thread's L1",
                   "regrun's test figures", "warnings"], rows)


def _sweep_table(name: str, columns: dict[str, str]) -> str:
    """The rows of one of bench/doc_figures.py's sweeps: `columns` maps compare's column to a header."""
    result = _results(name, "bench/doc_figures.py")
    rows = [[_figure(row.get(column)) if column != "run" else row["run"] for column in columns]
            for row in result["rows"]]
    return f"`{result['command']}`\n\n" + _table(list(columns.values()), rows)


def prune_sweep() -> str:
    """The pruning how-to's 4-λ sweep, pruned and fine-tuned."""
    return _sweep_table("prune_sweep", {
        "reg.targets.l1_weights.lambda": "λ", "test_acc": "test acc", "prune90_test_acc": "90% pruned",
        "prune90_finetuned_test_acc": "then 1 epoch fine-tuned", "prune95_test_acc": "95% pruned",
        "prune95_finetuned_test_acc": "then fine-tuned"})


def sae_sweep() -> str:
    """The sparse autoencoder tutorial's λ sweep."""
    return _sweep_table("sae_sweep", {
        "reg.targets.l1_code.lambda": "λ", "test_psnr": "test PSNR (dB)", "test_fvu": "test FVU",
        "sparsity.l1_code.l0": "L0 (test)", "sparsity.l1_code.zero_frac": "code zero fraction (test)",
        "sparsity.l1_code.train_dead_frac": "dead (training window)"})


GENERATORS: dict[str, Callable[[], str]] = {
    "penalties": penalties, "diagnostics": diagnostics, "run_directory": run_directory, "columns": columns,
    "exit_codes": exit_codes, "config_keys": config_keys, "components": components,
    "compare_options": compare_options, "prune_options": prune_options, "resume_help": resume_help,
    "regrun_help": regrun_help, "thread_figures": thread_figures, "prune_sweep": prune_sweep, "sae_sweep": sae_sweep,
}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace each `<!-- generated: NAME -->` line with its table."""
    def render(match: re.Match) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"{page.file.src_path}: unknown generated table {name!r}; allowed: {', '.join(GENERATORS)}")
        return GENERATORS[name]()

    return MARKER.sub(render, markdown)
