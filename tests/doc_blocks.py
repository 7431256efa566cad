"""The code blocks of the README and the documentation site, and how tests/test_docs.py runs them.

A ```bash, ```console or ```python block is run as written, in a fresh folder per page
(so a page's sweep is there for its `regrun compare`), with three substitutions that make
it cheap and self-contained: the data root is a tiny generated MNIST-format dataset
(REGRUN_DATA_ROOT, and any `dataset.root=` given), every run trains one epoch
(`trainer.epochs=1`, or what a `<!-- epochs: N -->` comment before the block says), and a
run folder written as `outputs/runs/<date>/<time>` (or a real date) is the page's latest.
The run folders themselves land in the page's folder (Hydra's `outputs/` under the
current directory). A block that cannot run here (a Slurm cluster, a Ray cluster, a pip
install, a server, a benchmark's minutes of timing) has a comment right before it,
`<!-- not-run: REASON -->`; a command documented to fail has `<!-- exit: N -->`. A
```python or ```yaml block whose first line is a comment naming a file (`# my_models.py,
in the folder ...`) is written to that file first.
"""

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w*)\s*$")
MARK = re.compile(r"^<!-- (not-run|exit|epochs): (.+?) -->$")
SHELL_LANGS = ("bash", "sh")  # blocks of plain shell commands
RUN_LANGS = (*SHELL_LANGS, "console", "python")
FILE_COMMENT = re.compile(r"^# ([\w./-]+\.(?:py|yaml|toml))\b")
# A run folder as the docs write it: a placeholder, or a real date and time.
RUN_PATH = re.compile(r"outputs/(runs|multiruns)/(?:<date>/<time>|\d{4}-\d\d-\d\d/[\d-]+)")
# The commands a block may run without a mark (regrun itself, Python, and shell plumbing).
RUNNABLE = ("regrun", "python", "OMP_NUM_THREADS=1 regrun", "RAY_AUTH_MODE")


@dataclass(frozen=True)
class Block:
    """One fenced code block and the marks before it."""

    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    not_run: str | None = None
    exit: int = 0
    epochs: int = 1

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def file(self) -> str | None:
        """The file this block is the content of, when its first line names one."""
        m = FILE_COMMENT.match(self.text.lstrip().splitlines()[0]) if self.text.strip() else None
        return m.group(1) if m else None

    @property
    def commands(self) -> list[str]:
        """The shell commands of a bash or console block, continuation lines joined."""
        if self.lang == "console":
            return [line[2:] for line in self.text.splitlines() if line.startswith("$ ")]
        if self.lang not in SHELL_LANGS:
            return []
        joined = re.sub(r"\\\n\s*", " ", self.text)
        return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def documents() -> list[Path]:
    """README.md, every page of the site, and the benchmarks' README."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), ROOT / "bench" / "README.md"]


def bench_commands(block: Block) -> list[tuple[str, list[str]]]:
    """The benchmark commands of a block: (`make TARGET` or `bench/NAME.py`, the options it gives)."""
    found = []
    for command in block.commands:
        words = command.split("#")[0].split()
        if words[:1] == ["make"]:
            found.append((" ".join(words[:2]), []))
        elif script := next((w for w in words if w.startswith("bench/") and w.endswith(".py")), None):
            found.append((script, [w.split("=")[0] for w in words if w.startswith("--")]))
    return found


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with the marks on the lines right before it."""
    lines = path.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or (not m.group(1) and not lines[i].startswith("```")):
            i += 1
            continue
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        marks, k = {}, i - 1
        while k >= 0 and (mark := MARK.match(lines[k].strip())):
            marks[mark.group(1)] = mark.group(2)
            k -= 1
        found.append(Block(path, i + 1, m.group(1), "\n".join(lines[i + 1:j]), marks.get("not-run"),
                           int(marks.get("exit", 0)), int(marks.get("epochs", 1))))
        i = j + 1
    return found


def unmarked_foreign(block: Block) -> list[str]:
    """The commands of a block that are not regrun's or Python's: each needs a not-run mark."""
    return [c for c in block.commands if not c.startswith(RUNNABLE)]


def shell_script(block: Block) -> str:
    """The block's commands as a bash script, run folders resolved to the page's latest."""
    latest = r'"$(ls -d outputs/\1/*/* | sort | tail -1)"'
    return "set -euo pipefail\n" + "\n".join(RUN_PATH.sub(latest, c) for c in block.commands) + "\n"


def rewrite(argv: list[str], data_root: str, epochs: int) -> list[str]:
    """A documented regrun command line, made cheap: the tiny data, `epochs` epochs, small searches."""
    if argv[:1] == ["resume"]:
        return [re.sub(r"^trainer\.epochs=\d+$", f"trainer.epochs={epochs + 1}", a) for a in argv]
    if argv[:1] == ["prune"]:
        return [re.sub(r"^\d+$", "1", a) if i and argv[i - 1] == "--finetune-epochs" else a for i, a in enumerate(argv)]
    if argv[:1] == ["compare"] or {"--help", "--hydra-help"} & set(argv):
        return argv
    out = []
    for a in argv:
        if a.startswith(("trainer.epochs=", "hydra.sweeper.n_trials=")):
            continue
        if a.startswith("dataset.root="):
            a = f"dataset.root={data_root}"
        elif a.startswith("dataset.train_limit="):
            a = "dataset.train_limit=256"
        out.append(a)
    out.append(f"trainer.epochs={epochs}")
    if any("hydra/sweeper=lambda_search" in a for a in argv):
        out.append("hydra.sweeper.n_trials=2")
    return out
