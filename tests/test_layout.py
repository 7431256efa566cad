"""Every run-directory file name and metrics column is spelled once, in regrun/layout.py: the
package, the Hydra plugins and the benches name them through its constants and helpers, so a
rename there reaches every writer and reader (and the tests, which spell them on purpose)."""

import ast
import re
from pathlib import Path

import pytest

from regrun import layout

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for p in [*(ROOT / "regrun").rglob("*.py"), *(ROOT / "hydra_plugins").rglob("*.py"),
                             *(ROOT / "bench").glob("*.py")] if p != ROOT / "regrun" / "layout.py")

# Every name layout.py spells: file and folder names, statuses, columns, column families.
NAMES = {value for key, value in vars(layout).items() if key.isupper() and isinstance(value, str)}
FAMILIES = (layout.PENALTY, layout.LAMBDA, layout.SPARSITY)
PREFIXES = FAMILIES + tuple(re.escape(family) for family in FAMILIES)  # in a regular expression too
# A file name inside a message ("no config.json", "{dir}/checkpoint.pt"): those with an extension.
IN_TEXT = re.compile(r"(?<![\w.])(?:{})(?!\w)".format(
    "|".join(re.escape(name) for name in sorted(NAMES) if re.search(r"\w\.\w+$", name))))
# Words a layout name shares with other records: the keys of a checkpoint (its format is
# versioned apart from metrics.csv's columns), read as `checkpoint[...]` / `payload[...]`, and
# torch's optimizer state (`state["step"]`).
OWN_KEYS = {"regrun/rundir/checkpoint.py": {layout.EPOCH, layout.STEP}}
OTHER_RECORDS = {"checkpoint", "payload", "state"}


def findings(source: str, path: str = "") -> list[tuple[int, str]]:
    """(line, text) of each string constant of `source` that spells a layout name, starts
    with a column family's prefix or names a run-directory file; docstrings excepted."""
    tree = ast.parse(source)
    skipped = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and body and \
                isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            skipped.add(id(body[0].value))
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in OTHER_RECORDS:
            skipped.add(id(node.slice))
    own = OWN_KEYS.get(path, set())
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str) or id(node) in skipped:
            continue
        text = node.value
        if (text in NAMES and text not in own) or text.startswith(PREFIXES) or IN_TEXT.search(text):
            found.append((node.lineno, node.col_offset, text))
    return [(line, text) for line, _, text in sorted(found)]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_layout_names_are_spelled_only_in_layout(path: Path) -> None:
    where = path.relative_to(ROOT).as_posix()
    found = findings(path.read_text(), where)
    assert not found, f"{where} spells layout names itself; use regrun.layout's constants and helpers: " + \
        "; ".join(f"line {line}: {text!r}" for line, text in found)


def test_the_check_finds_each_kind_of_literal() -> None:
    """The check above can fail: names, columns, a family's prefix in an f-string or a regular
    expression, a file named in a message; docstrings and a checkpoint's keys pass."""
    source = '''
"""The module's docstring may say summary.json and penalty.<t>.raw."""
import re

def f(row, t, checkpoint, out):
    """So may a function's: metrics.csv."""
    open(out / "summary.json")
    row["epoch_time_s"], row["epoch"], out / ".hydra"
    f"penalty.{t}.raw"
    re.fullmatch(r"sparsity\\.(.+)\\.l0", t)
    status = "interrupted"
    raise ValueError(f"{out}/checkpoint.pt is damaged; see regrun.log")
    return checkpoint["epoch"], "hydra_config.json", "epochs"
'''
    assert [text for _, text in findings(source)] == [
        "summary.json", "epoch_time_s", "epoch", ".hydra", "penalty.", "sparsity\\.(.+)\\.l0", "interrupted",
        "/checkpoint.pt is damaged; see regrun.log"]


def test_a_checkpoints_own_keys_pass_only_in_its_module() -> None:
    source = 'KEYS = ("epoch", "step")\n'
    assert findings(source, "regrun/rundir/checkpoint.py") == []
    assert findings(source, "regrun/rundir/files.py") == [(1, "epoch"), (1, "step")]
