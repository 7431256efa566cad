"""The layout's promises, read from the source: no import cycles, and data flows one way,
config → components → training → run directory → analysis, with the command on top."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "regrun"

# A layer may import the layers listed for it, and itself; nothing else of regrun's.
BASE = {"regrun", "regrun.errors", "regrun.layout", "regrun.config", "regrun.console", "regrun.schema"}
ALLOWED = {
    "components": BASE | {"components"},
    "training": BASE | {"components", "training"},
    "analysis": BASE | {"analysis"},
    "cli": BASE | {"components", "training", "analysis", "cli"},
    "api": BASE | {"components", "training", "analysis", "cli", "api"},
}
TORCH_FREE = ("regrun.errors", "regrun.layout", "regrun.config", "regrun.console", "regrun.schema", "regrun.analysis",
              "regrun.cli.compare")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module an import statement of the file names (lazy imports inside functions too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


GRAPH = {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def regrun_edges(module: str) -> set[str]:
    return {m for m in GRAPH[module] if m in GRAPH and m != module}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else module


def test_there_is_no_import_cycle() -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(regrun_edges(module)):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " → ".join([*path[path.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if layer(m) in ALLOWED))
def test_each_layer_imports_only_the_layers_below_it(module: str) -> None:
    allowed = ALLOWED[layer(module)]
    wrong = {m for m in regrun_edges(module) if m not in allowed and layer(m) not in allowed}
    assert not wrong, f"{module} imports {sorted(wrong)}; its layer may import {sorted(allowed)}"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith(TORCH_FREE)))
def test_readers_of_run_directories_stay_free_of_torch(module: str) -> None:
    assert not {m for m in GRAPH[module] if m == "torch" or m.startswith("torch.")}, module
