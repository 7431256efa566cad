"""Every command of the README and the documentation site runs (tests/doc_blocks.py says how),
or is marked as not run with the reason; the figures the README quotes are those of
docs/results/readme.json, which bench/doc_figures.py writes from real runs.

    pytest tests/test_docs.py -q -rA -s              # the counts, and the fast part
    pytest tests/test_docs.py -m heavy -q            # every page's blocks (minutes)
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_tensors
from doc_blocks import ROOT, RUN_LANGS, Block, bench_commands, blocks, documents, shell_script, unmarked_foreign

TESTS = Path(__file__).resolve().parent
WRAPPER = f"""#!{sys.executable}
import os, sys
sys.path.insert(0, {str(TESTS)!r})
from doc_blocks import rewrite
from regrun.cli import main
sys.argv = ["regrun", *rewrite(sys.argv[1:], os.environ["REGRUN_DATA_ROOT"], int(os.environ["REGRUN_DOC_EPOCHS"]))]
sys.exit(main())
"""


def all_blocks() -> list[Block]:
    return [b for path in documents() for b in blocks(path) if b.lang in RUN_LANGS or b.file]


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for PATH: `regrun` made cheap (doc_blocks.rewrite), `python` this interpreter."""
    folder = tmp_path_factory.mktemp("bin")
    (folder / "regrun").write_text(WRAPPER)
    (folder / "regrun").chmod(0o755)
    (folder / "python").symlink_to(sys.executable)
    return folder


@pytest.fixture
def data_root(tiny_root: Path) -> Path:
    """conftest's tiny data root, as REGRUN_DATA_ROOT for the documented commands."""
    return tiny_root


def run_block(block: Block, cwd: Path, bin_dir: Path, data_root: Path) -> subprocess.CompletedProcess:
    """Run one block in the page's folder: a file block is written, Python executed, shell run."""
    env = os.environ | {"PATH": f"{bin_dir}:{os.environ['PATH']}", "REGRUN_DATA_ROOT": str(data_root),
                        "REGRUN_DOC_EPOCHS": str(block.epochs), "COLUMNS": "160", "PYTHONPATH": f"{ROOT}:{cwd}",
                        "OMP_NUM_THREADS": "1"}
    if block.file:
        target = cwd / block.file
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.text + "\n")
        if block.lang != "python":
            return subprocess.CompletedProcess([], 0, "", "")
        return subprocess.run([sys.executable, str(target)], cwd=cwd, env=env, capture_output=True, text=True)
    if block.lang == "python":
        return subprocess.run([sys.executable, "-c", block.text], cwd=cwd, env=env, capture_output=True, text=True)
    return subprocess.run(["bash", "-c", shell_script(block)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def check(block: Block, done: subprocess.CompletedProcess) -> None:
    assert done.returncode == block.exit, (
        f"{block.where}: exit {done.returncode}, documented {block.exit}\n{block.text}\n--- output\n"
        + (done.stdout + done.stderr)[-4000:])


def test_every_block_is_run_or_marked_with_why() -> None:
    runnable = [b for b in all_blocks() if b.not_run is None]
    marked = [b for b in all_blocks() if b.not_run is not None]
    unmarked = [f"{b.where}: {c}" for b in runnable for c in unmarked_foreign(b)]
    commands = sum(len(b.commands) for b in runnable)
    reasons: dict[str, int] = {}
    for b in marked:
        reasons[b.not_run or ""] = reasons.get(b.not_run or "", 0) + 1
    print(f"\ndoc blocks: {len(runnable)} run ({commands} shell commands, "
          f"{sum(b.lang == 'python' for b in runnable)} Python blocks, {sum(bool(b.file) for b in runnable)} files "
          f"written), {len(marked)} not run:")
    for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
        print(f"  {n} × {reason}")
    assert not unmarked, "commands that are neither regrun's nor marked <!-- not-run: WHY -->:\n" + "\n".join(unmarked)
    assert len(marked) < len(runnable)


def test_the_figures_the_readme_quotes_are_the_results_files() -> None:
    results = json.loads((ROOT / "docs" / "results" / "readme.json").read_text())
    readme = (ROOT / "README.md").read_text()
    act, base = results["activations"]["final"], results["activations_baseline"]["final"]
    weights, conv, collapse = (results[k]["final"] for k in ("weights", "conv", "collapse"))
    quoted = [f"{act['sparsity.act1.zero_frac']:.1%} of act1's outputs", f"{base['sparsity.act1.zero_frac']:.3f}",
              f"{act['test_acc']:.4f}", f"{base['test_acc']:.4f}", f"{weights['sparsity.l1_weights.zero_frac']:.1%}",
              f"{weights['test_acc']:.4f}", f"{conv['test_psnr']:.2f} dB", f"test accuracy {collapse['test_acc']:.4f}"]
    missing = [q for q in quoted if q not in readme]
    assert not missing, f"README.md no longer quotes docs/results/readme.json: {missing}"
    for name in ("activations", "weights", "collapse"):  # the outputs shown are the runs'
        assert results[name]["command"] in readme.replace("'", ""), name


def test_the_readmes_first_command_runs(tmp_path: Path, bin_dir: Path, data_root: Path) -> None:
    block = next(b for b in blocks(ROOT / "README.md") if b.commands and b.not_run is None)
    check(block, run_block(block, tmp_path, bin_dir, data_root))


@pytest.mark.heavy
@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_block_of_the_page_runs(path: Path, tmp_path: Path, bin_dir: Path, data_root: Path) -> None:
    write_tensors(tmp_path / "my_data.npz", n_train=256)  # the file the data how-to's tensors example names
    for block in blocks(path):
        if block.not_run is None and (block.lang in RUN_LANGS or block.file):
            check(block, run_block(block, tmp_path, bin_dir, data_root))


@pytest.mark.heavy
def test_the_benchmarks_documented_commands_name_targets_and_options_that_exist() -> None:
    """bench/README.md's commands are not run (each is minutes of timing); each make target
    they name must exist, and each option they give a script must be one its --help lists."""
    helps: dict[str, str] = {}
    checked = []
    for block in blocks(ROOT / "bench" / "README.md"):
        for what, options in bench_commands(block):
            if what.startswith("make "):
                done = subprocess.run(["make", "-n", what.split()[1]], cwd=ROOT, capture_output=True, text=True)
                assert done.returncode == 0, f"{block.where}: {what}: {done.stderr.strip()}"
            else:
                if what not in helps:
                    done = subprocess.run([sys.executable, str(ROOT / what), "--help"], cwd=ROOT,
                                          capture_output=True, text=True, timeout=120)
                    assert done.returncode == 0, f"{block.where}: {what} --help: {done.stderr.strip()[-2000:]}"
                    helps[what] = done.stdout
                missing = [o for o in options if o not in helps[what].split()]
                assert not missing, f"{block.where}: {what} has no option {missing}"
            checked.append(what)
    assert len(checked) >= 10, checked
