"""The layout's promises, read from the source: no import cycles, and data flows one way,
config → components → measure → training → run directory → jobs → command, with analysis
(the torch-free readers of run directories) beside them."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "regrun"

# A layer may import the layers listed for it, and itself; nothing else of regrun's.
BASE = {"regrun", "regrun.errors", "regrun.layout", "regrun.config", "regrun.console", "regrun.schema"}
LAYERS = ("components", "measure", "training", "rundir", "jobs")
ALLOWED = {name: BASE | set(LAYERS[:i + 1]) for i, name in enumerate(LAYERS)}
ALLOWED["analysis"] = BASE | {"analysis"}
ALLOWED["cli"] = BASE | {*LAYERS, "analysis", "cli"}
ALLOWED["api"] = ALLOWED["cli"] | {"api"}
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


ROOT = PACKAGE.parent
PLUGINS = sorted((ROOT / "hydra_plugins").rglob("*.py"))
BENCHES = sorted((ROOT / "bench").glob("*.py"))


def defined_names(module: str) -> set[str]:
    """The top-level names a regrun module defines or imports (what `from module import x` may take)."""
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = path.with_suffix("") / "__init__.py"
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return names


def regrun_imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) of each `from regrun... import name` in a file outside the package."""
    return [(node.module, alias.name) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "regrun"
            for alias in node.names]


@pytest.mark.parametrize("path", PLUGINS, ids=lambda p: p.name)
def test_hydra_plugins_only_plug_in_the_command(path: Path) -> None:
    """A plugin module holds Hydra's glue; the work it plugs in lives in regrun.cli."""
    wrong = {m for m in imports(path) if m.split(".")[0] == "regrun" and not m.startswith("regrun.cli")}
    assert not wrong, f"{path.name} imports {sorted(wrong)}; a Hydra plugin may import regrun.cli only"


@pytest.mark.parametrize("path", BENCHES + PLUGINS, ids=lambda p: p.name)
def test_scripts_import_names_that_exist(path: Path) -> None:
    """A bench script is run by hand, so a rename in the package would break it silently."""
    for module, name in regrun_imports(path):
        assert module in GRAPH, f"{path.name}: no module {module}"
        submodule = f"{module}.{name}" in GRAPH
        assert submodule or name in defined_names(module), f"{path.name}: {module} has no {name}"
