"""User and plugin code that calls `sys.exit` (or raises another BaseException) is contained:
a run ends `failed` with one line naming where (the factory, the forward at step N, the
evaluation), exit 2 alone, and a sweep goes on; a plugin that exits as it is imported is a
warning, as a broken plugin is. Ctrl-C stays the user's stop."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REGRUN, write_plugin
from test_errors import one_line_error

from regrun.cli import main
from regrun.components.registry import Registry
from regrun.errors import UserExit, contained
from regrun.jobs.signals import StopNow

pytestmark = pytest.mark.usefixtures("keep_signal_handlers")  # main() installs its own

FORWARD = r"\(exiting_models\.py:\d+, in forward\)"
# (case, arguments after the common ones, the one line's pattern, whether summary.json says failed)
CASES = [
    ("factory calling sys.exit(0)", ["model.factory=exiting_models:exits"],
     r"model\.factory: exiting_models:exits called sys\.exit\(0\) \(exiting_models\.py:\d+, in exits\)$", False),
    ("module calling sys.exit as it is imported", ["model.factory=exits_on_import:net"],
     r"model\.factory: importing 'exits_on_import' called sys\.exit\(3\) \(exits_on_import\.py:3, in <module>\)$",
     False),
    ("forward calling sys.exit on the example batch", ["model.factory=exiting_models:net", "+model.where=check"],
     rf"model 'custom' forward on an example batch called sys\.exit\(7\) {FORWARD}$", False),
    ("forward calling sys.exit at step 3", ["model.factory=exiting_models:net"],
     rf"the model's forward at step 3 \(epoch 1, batch 3/\d+\) called sys\.exit\(7\) {FORWARD}$", True),
    ("forward calling sys.exit in the evaluation", ["model.factory=exiting_models:net", "+model.where=eval"],
     rf"the model's forward in the evaluation after epoch 1 called sys\.exit\(7\) {FORWARD}$", True),
]


def call(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["regrun", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


def base(root: Path, *extra: str) -> list[str]:
    return [f"dataset.root={root}", "dataset.download=false", "trainer.device=cpu", "trainer.epochs=1",
            "trainer.batch_size=32", "model=custom", *extra]


@pytest.mark.parametrize(("case", "argv", "pattern", "recorded"), CASES, ids=[c[0] for c in CASES])
def test_user_code_calling_sys_exit_ends_the_run_failed_in_one_line(
        case: str, argv: list[str], pattern: str, recorded: bool, user_models: Path, tiny_root: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    code, err = call([*base(tiny_root, f"hydra.run.dir={out}"), *argv], monkeypatch, capsys)
    one_line_error(code, err, "", "regrun: error:")
    message = err.strip().removeprefix("regrun: error: ")
    if recorded:  # a run that trained keeps the traceback in its log and says where
        suffix = f" (traceback in {out / 'regrun.log'})"
        assert message.endswith(suffix), message
        message = message.removesuffix(suffix)
        assert re.match(pattern, message), message
    else:
        assert re.match(pattern, message), message
    if recorded:  # it trained: the run says how it ended
        summary = json.loads((out / "summary.json").read_text())
        assert summary["status"] == "failed" and summary["error"] == message
    else:  # refused before anything was written
        assert not (out / "summary.json").exists()


def test_a_sweep_goes_on_after_a_job_whose_model_exits(user_models: Path, tiny_root: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    sweep = tmp_path / "sweep"
    code, _ = call(["-m", *base(tiny_root, f"hydra.sweep.dir={sweep}"),
                    "model.factory=exiting_models:exits,my_models:make_net,exiting_models:net"], monkeypatch, capsys)
    assert code == 2  # a sweep exits as its worst job
    statuses = [json.loads((sweep / str(job) / "summary.json").read_text()) for job in range(3)]
    assert [s["status"] for s in statuses] == ["failed", "completed", "failed"]
    assert "called sys.exit(0)" in statuses[0]["error"] and "the model's forward at step 3 " in statuses[2]["error"]


@pytest.mark.parametrize("raised, said", [
    (SystemExit(7), "called sys.exit(7)"), (SystemExit(), "called sys.exit()"), (SystemExit("bye"), "called sys.exit('bye')"),
    (type("Quit", (BaseException,), {})("now"), "raised Quit: now"),
])
def test_contained_says_what_the_code_did_and_where(raised: BaseException, said: str) -> None:
    def user_code() -> None:
        raise raised

    with pytest.raises(UserExit) as err, contained("the factory"):
        user_code()
    assert re.fullmatch(rf"the factory {re.escape(said)} \(test_user_exits\.py:\d+, in user_code\)", str(err.value))


@pytest.mark.parametrize("raised", [KeyboardInterrupt(), StopNow("SIGTERM"), GeneratorExit(), ValueError("x")])
def test_the_users_stop_and_ordinary_errors_pass_through(raised: BaseException) -> None:
    with pytest.raises(type(raised)), contained("the factory"):
        raise raised


def test_a_plugin_that_exits_as_it_is_imported_is_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.syspath_prepend(str(write_plugin(tmp_path, "import sys\nsys.exit(3)\n")))
    registry = Registry("model", "regrun.models")
    registry.register("mlp", object())
    assert list(registry) == ["mlp"]  # the plugin left out, the registry whole
    assert "model plugin 'tiny' (tiny_plugin:tiny) not loaded: it called sys.exit(3) (tiny_plugin.py:2, in <module>)" \
           in caplog.text
    sys.modules.pop("tiny_plugin", None)


@pytest.mark.heavy
def test_help_and_a_run_survive_a_plugin_that_exits(tmp_path: Path, tiny_root: Path) -> None:
    site = write_plugin(tmp_path, "import sys\nsys.exit(0)\n")
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), "COLUMNS": "160"}
    shown = subprocess.run([REGRUN, "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0 and "models (model.name): mlp, cnn, autoencoder, custom   [plugins" in shown.stdout
    assert "model plugin 'tiny' (tiny_plugin:tiny) not loaded: it called sys.exit(0)" in shown.stderr
    ran = subprocess.run([REGRUN, *base(tiny_root)[:-1], f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "completed"
