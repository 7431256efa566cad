"""Property-based tests (hypothesis): hostile input through the real entry points.

Whatever the bytes in a run directory, and whatever values the command line gives, regrun
ends with a documented exit code, prints no traceback, says what is wrong in one line, and
changes no file it did not write. Example counts are fixed (derandomized, so CI is
repeatable); the README's exit-code table is what they check against.
"""

import json
import sys
from pathlib import Path

import pytest
from fake_runs import config, final, write_run
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from regrun.cli import main
from regrun.layout import LOCK

pytestmark = [pytest.mark.heavy, pytest.mark.usefixtures("keep_signal_handlers")]  # `make test-heavy`

EXIT_CODES = {0, 1, 2}  # completed · diverged/interrupted/incomplete · bad input or failed
RUN_FILES = ["summary.json", "metrics.csv", "config.json", "targets.json", ".hydra/config.yaml",
             ".hydra/overrides.yaml", ".hydra/hydra.yaml"]
SETTINGS = settings(max_examples=50, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                           max_leaves=8)
file_bytes = st.one_of(
    st.binary(max_size=64),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(st.text(alphabet=",\n\"x1.e-", max_size=12), max_size=5).map(lambda rows: "\n".join(rows).encode()),
    st.dictionaries(st.sampled_from(["status", "final", "config", "targets", "error", "task"]), json_values,
                    max_size=4).map(lambda d: json.dumps(d).encode()),
)


def call(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """Run the real `regrun` entry point in-process; (exit code, stdout + stderr)."""
    monkeypatch.setattr(sys, "argv", ["regrun", *argv])
    try:
        main()
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    out = capsys.readouterr()
    return code, out.out + out.err


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file's bytes but the lock's, which each writer that looks rewrites (pid, argv)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != LOCK}


def assert_documented_end(code: int, output: str, prefix: str) -> None:
    assert code in EXIT_CODES, output
    assert "Traceback" not in output, output
    if code == 2:
        errors = [line for line in output.splitlines() if line.startswith(prefix)]
        assert len(errors) == 1, output


@SETTINGS
@given(name=st.sampled_from(RUN_FILES), content=file_bytes)
@example(name="summary.json", content=b"[]")
@example(name="metrics.csv", content=b"epoch,test_acc\n1,2,3\n\x00")
def test_compare_reads_any_bytes_in_any_run_file(tmp_path_factory: pytest.TempPathFactory, name: str, content: bytes,
                                                  monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path_factory.mktemp("runs")
    write_run(root / "good", config(lam=1e-3), final(0.9, 0.5))
    damaged = write_run(root / "bad", config(lam=1e-2), final(0.8, 0.7))
    (damaged / name).write_bytes(content)
    before = snapshot(root)
    code, output = call(["compare", str(root), "--format", "csv"], monkeypatch, capsys)
    assert_documented_end(code, output, "regrun compare: error:")
    assert code == 0  # the good run is always listed
    assert snapshot(root) == before  # a reader writes nothing


@SETTINGS
@given(name=st.sampled_from(RUN_FILES), content=file_bytes)
@example(name="config.json", content=b'{"trainer": 3}')
def test_resume_refuses_a_damaged_run_in_one_line(tmp_path_factory: pytest.TempPathFactory, name: str, content: bytes,
                                                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path_factory.mktemp("runs")
    run = write_run(root / "run", config(), final(0.9, 0.5), status="interrupted")
    (run / "config.json").write_text(json.dumps(config() | {"dataset": {"name": "mnist", "root": str(root / "none"),
                                                                         "download": False}}))
    (run / name).write_bytes(content)
    outside = snapshot(root)
    code, output = call(["resume", str(run)], monkeypatch, capsys)
    assert_documented_end(code, output, "regrun resume: error:")
    assert code == 2  # damaged, or its data folder does not exist: refused either way
    assert snapshot(root) == outside  # a refused resume writes nothing


# Keys a user overrides, and values a hurried or hostile user gives them (no size that
# would take the machine down: widths and epochs stay small whatever is drawn).
KEYS = ["trainer.batch_size", "trainer.eval_every", "trainer.checkpoint_every", "trainer.device", "seed",
        "model.hidden", "model.dropout", "model.activation", "model.norm", "optimizer.lr", "optimizer.weight_decay",
        "dataset.train_limit", "dataset.val_size", "sparsity.thresholds", "reg.targets.l1_activations.lambda",
        "reg.targets.l1_activations.layers", "reg.targets.l1_activations.warmup_steps",
        "reg.targets.l1_activations.penalty", "reg.targets.l1_activations.proximal", "objective.metric"]
VALUES = ["0", "-1", "1", "2", "0.5", "1e-3", "abc", "true", "'no'", "null", "[]", "[0]", "[8]", "[8,-2]", "nan",
          "inf", "${nope}", "[act1]", "l3", "cuda", "test_acc"]


@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(overrides=st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(VALUES)), min_size=1, max_size=2,
                          unique_by=lambda kv: kv[0]))
@example(overrides=[("model.hidden", "[8,-2]")])
@example(overrides=[("optimizer.lr", "inf")])
def test_any_override_ends_documented_and_touches_only_its_run_folder(
        overrides: list[tuple[str, str]], tiny_root: Path, tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    work = tmp_path_factory.mktemp("work")
    (work / "other").mkdir()
    (work / "other" / "notes.txt").write_text("a file of someone else's")
    data_before, work_before = snapshot(tiny_root), snapshot(work)
    argv = [f"dataset.root={tiny_root}", "dataset.download=false", "trainer.device=cpu", "trainer.epochs=1",
            "trainer.batch_size=32", "model.hidden=[16]", "reg=l1_activations", f"hydra.run.dir={work}/run",
            *(f"{key}={value}" for key, value in overrides)]
    code, output = call(argv, monkeypatch, capsys)
    assert_documented_end(code, output, "regrun: error:")
    assert snapshot(tiny_root) == data_before  # data folders are read-only to regrun
    assert {k: v for k, v in snapshot(work).items() if not k.startswith("run/")} == work_before


def tree_keys() -> list[str]:
    """Every leaf key of the composed default config and of the reg=l1_activations preset: the
    keys a user can override, read from the config tree itself (so that a new key is drawn too)."""
    from hydra import compose, initialize_config_dir

    from regrun.config import conf_dir, flatten

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["reg=l1_activations"])
    plain = OmegaConf.to_container(cfg, resolve=False)
    return sorted(key for key in flatten(plain) if key.split(".")[0] not in ("hydra", "dataset"))


def groups_and_options() -> list[str]:
    """GROUP=OPTION for every preset in conf/ (reg=l1_weights, model=cnn, ...)."""
    from regrun.config import conf_dir

    return sorted(f"{p.parent.relative_to(conf_dir()).as_posix()}={p.stem}" for p in conf_dir().rglob("*.yaml")
                  if p.parent != conf_dir() and "hydra" not in p.parts)


def typo(word: str, draw: st.DrawFn) -> str:
    """`word` with one letter dropped, doubled or swapped with its neighbour (a hurried hand)."""
    i = draw(st.integers(0, len(word) - 2))
    kind = draw(st.sampled_from(["drop", "double", "swap"]))
    if kind == "drop":
        return word[:i] + word[i + 1:]
    if kind == "double":
        return word[:i] + word[i] + word[i:]
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


@st.composite
def hostile_overrides(draw: st.DrawFn) -> list[str]:
    """One or two overrides from the config tree: a real key with a hostile value, a typo of a
    real key, or a real group with a typo of one of its options (or of the group itself)."""
    keys, choices_ = tree_keys(), groups_and_options()
    lines = []
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(["value", "key typo", "option typo", "group typo"]))
        if kind == "value":
            lines.append(f"{draw(st.sampled_from(keys))}={draw(st.sampled_from(VALUES))}")
        elif kind == "key typo":
            key = draw(st.sampled_from(keys))
            lines.append(f"{typo(key, draw)}={draw(st.sampled_from(VALUES))}")
        else:
            group, option = draw(st.sampled_from(choices_)).split("=")
            lines.append(f"{group}={typo(option, draw)}" if kind == "option typo" or len(group) < 3
                         else f"{typo(group, draw)}={option}")
    return lines


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(overrides=hostile_overrides())
@example(overrides=["modle=mlp"])
@example(overrides=["model=mpl"])
@example(overrides=["trainer.epoch=1"])
def test_overrides_drawn_from_the_config_tree_end_documented_and_a_refusal_writes_nothing(
        overrides: list[str], tiny_root: Path, tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    work = tmp_path_factory.mktemp("work")
    run = work / "run"
    argv = [f"dataset.root={tiny_root}", "dataset.download=false", "trainer.device=cpu", "trainer.epochs=1",
            "trainer.batch_size=32", "model.hidden=[16]", "reg=l1_activations", f"hydra.run.dir={run}", *overrides]
    code, output = call(argv, monkeypatch, capsys)
    assert code in {0, 2}, output  # completed, or refused / failed: never the exit of a diverged run's 1
    assert "Traceback" not in output and "HYDRA_FULL_ERROR" not in output, output
    if code == 2:
        errors = [line for line in output.splitlines() if line.startswith("regrun: error:")]
        assert len(errors) == 1 and len(output.strip().splitlines()) <= 3, output
        if not (run / "summary.json").exists():  # refused before training: nothing of it on disk
            assert not run.exists() or not any(run.rglob("*")), sorted(run.rglob("*"))
