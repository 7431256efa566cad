"""Bad input, table-driven: each case through the real entry point (`regrun.cli.main`, in
process for speed) must end with one line on stderr that names the bad value, a non-zero
exit, no traceback, and no training."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from conftest import write_dataset

from regrun.cli import main
from regrun.jobs.run import run
from regrun.layout import LOCK

pytestmark = pytest.mark.usefixtures("keep_signal_handlers")  # main() installs its own

L1 = "reg.targets.l1_activations"

# (case, command-line arguments, a fragment the one-line message must hold). {root} is
# the tiny data, {tmp} the test's own folder, {done} a finished run; copies of it with
# {mixed} the checkpoint of a run of another config, {corrupt} one of garbage bytes and
# {cut} one cut in half.
CASES = [
    ("unknown layer", ["reg=l1_activations", f"{L1}.layers=[fc9]"],
     f"{L1}.layers: 'fc9' matches no module; the model has: flatten, fc1, act1, fc2, act2, head"),
    ("pattern matching nothing", ["reg=l1_activations", f"{L1}.layers=[conv*]"], "conv*"),
    ("lambda negative", ["reg=l1_activations", f"{L1}.lambda=-1"], "lambda must be a finite number ≥ 0, got -1"),
    ("lambda not a number", ["reg=l1_activations", f"{L1}.lambda=abc"], "'abc'"),
    ("unknown penalty", ["reg=l1_activations", f"{L1}.penalty=l3"], "unknown penalty 'l3'; allowed: l1, l2, l2_norm, elastic_net"),
    ("unknown site", ["reg=l1_activations", f"{L1}.site=neurons"],
     "unknown site 'neurons'; allowed: weights, biases, params, activations"),
    ("unknown reduction", ["reg=l1_activations", f"{L1}.reduction=median"], "median"),
    ("l1_ratio outside [0, 1]", ["reg=elastic_net", "reg.targets.elastic_net.l1_ratio=2"], "l1_ratio"),
    ("proximal on activations", ["reg=l1_activations", f"+{L1}.proximal=true"], "proximal"),
    ("adaptive proximal without Adam", ["optimizer=sgd", "reg=l1_weights", "reg.targets.l1_weights.proximal=adaptive"],
     "proximal=adaptive scales the threshold by Adam's per-coordinate step; optimizer 'sgd' has none; allowed: adam, adamw"),
    ("schedule window after the last epoch", ["reg=l1_activations", "reg.targets.l1_activations.start_epoch=3"],
     "start_epoch=3 is after the last epoch (trainer.epochs=1); allowed: 1 to 1"),
    ("unknown decay", ["reg=l1_activations", "reg.targets.l1_activations.decay=exp"],
     "reg.targets.l1_activations.decay: unknown decay 'exp'; allowed: none, linear, cosine"),
    ("learning rate given as text", ["optimizer.lr='0.001'"], "optimizer.lr must be a number, got '0.001'"),
    ("seed outside NumPy's range", ["seed=-1"], "seed must be an integer in [0, 4294967295], got -1"),
    ("seed too large", ["seed=4294967296"], "seed must be an integer in [0, 4294967295], got 4294967296"),
    ("unknown top-level key", ["+epochs=3"], "epochs: unknown top-level key; allowed: seed, trainer, model, dataset"),
    ("dropout given as text", ["model.dropout='0.1'"], "model.dropout must be a number in [0, 1), got '0.1'"),
    ("boolean given as text", ["dataset.download='no'"], "dataset.download must be true or false, got 'no'"),
    ("typo under reg", ["+reg.target=1"], "reg.target: unknown key"),
    ("epochs zero", ["trainer.epochs=0"], "trainer.epochs must be a positive integer, got 0"),
    ("batch size negative", ["trainer.batch_size=-5"], "trainer.batch_size must be a positive integer, got -5"),
    ("batch size larger than the dataset", ["trainer.batch_size=100000"], "larger than the training set (320 samples)"),
    ("checkpoint_every negative", ["trainer.checkpoint_every=-1"], "trainer.checkpoint_every"),
    ("unknown trainer key", ["+trainer.epoch=3"], "trainer.epoch: unknown key"),
    ("unknown device", ["trainer.device=tpu"], "'tpu'"),
    ("unknown model", ["model.name=resnet"], "resnet"),
    ("unknown activation", ["model.activation=swishy"], "swishy"),
    ("unknown optimizer", ["optimizer.name=rmsprop"], "rmsprop"),
    ("parameter in two groups", ["+optimizer.groups.a={{layers:[fc1],lr:0.1}}", "+optimizer.groups.b={{types:[Linear],weight_decay:0.1}}"],
     "parameter 'fc1.weight' is selected by both 'a' and 'b'"),
    ("unknown group key", ["+optimizer.groups.a={{layers:[fc1],decay:0.1}}"], "optimizer.groups.a.decay: unknown key"),
    ("group value of the wrong kind", ["+optimizer.groups.a={{layers:[fc1],lr:fast}}"], "optimizer.groups.a.lr must be a number, got 'fast'"),
    ("seed not an integer", ["seed=abc"], "seed must be an integer in [0, 4294967295], got 'abc'"),
    ("negative threshold", ["sparsity.thresholds=[-1]"], "sparsity.thresholds"),
    ("dataset missing offline", ["dataset.root={tmp}/nowhere"],
     "dataset mnist: download is off (dataset.download=false) and {tmp}/nowhere/MNIST/raw lacks"),
    ("truncated IDX file", ["dataset.root={tmp}/truncated"], "train-images-idx3-ubyte"),
    ("output folder that cannot be created", ["hydra.run.dir={tmp}/a-file/run"], "a-file is not a writable directory"),
    ("objective on a figure the run lacks", ["objective.metric=test_f1"], "test_f1"),
]
if not torch.cuda.is_available():
    CASES.append(("cuda without a GPU", ["trainer.device=cuda"], "no CUDA GPU"))

# The subcommands: (case, argv after `regrun`, fragment).
SUBCOMMAND_CASES = [
    ("compare on a folder with no run", ["compare", "{tmp}/empty"], "no run found"),
    ("compare on a path that does not exist", ["compare", "{tmp}/missing"], "{tmp}/missing"),
    ("resume on a folder with no run", ["resume", "{tmp}/empty"], "holds no regrun run"),
    ("resume on a path that does not exist", ["resume", "{tmp}/missing"], "no such directory"),
    ("resume a finished run", ["resume", "{done}"], "trainer.epochs=N"),
    ("resume changing the model", ["resume", "{done}", "model.hidden=[8]"], "'model.hidden=[8]': a resume can change only"),
    ("resume adding a tracker", ["resume", "{done}", "trainer.epochs=3", "logger.mlflow.timeout=3"],
     "'logger.mlflow.timeout=3': the run has no MLflow logger (logger=mlflow) to change; a resume cannot add a tracker"),
    ("resume a checkpoint of another config", ["resume", "{mixed}", "trainer.epochs=3"], "incompatible config: seed is 5"),
    ("resume a corrupt checkpoint", ["resume", "{corrupt}", "trainer.epochs=3"],
     "not a readable regrun checkpoint (corrupt, or holds more than plain data and tensors: Unsupported operand 0)"),
    ("resume a truncated checkpoint", ["resume", "{cut}", "trainer.epochs=3"],
     "not a readable regrun checkpoint (PytorchStreamReader failed reading zip archive: failed finding central directory)"),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory, tiny_root: Path) -> dict[str, Path]:
    """The folders the cases name: bad data, a file in the way, finished runs to resume."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from regrun.config import conf_dir

    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "empty").mkdir()
    (tmp / "a-file").write_text("not a folder")
    raw = write_dataset(tmp / "truncated") / "MNIST" / "raw"
    image_file = raw / "train-images-idx3-ubyte"
    image_file.write_bytes(image_file.read_bytes()[:1000])

    def finished(name: str, seed: int) -> Path:
        overrides = [f"dataset.root={tiny_root}", "dataset.download=false", "trainer.device=cpu",
                     "trainer.epochs=1", "trainer.batch_size=32", f"seed={seed}"]
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = OmegaConf.to_container(compose(config_name="config", overrides=overrides), resolve=True)
        run(cfg, tmp / name)
        return tmp / name

    done, other = finished("done", 0), finished("other", 5)
    for name in ("mixed", "corrupt", "cut"):
        shutil.copytree(done, tmp / name)
    shutil.copy(other / "checkpoint.pt", tmp / "mixed" / "checkpoint.pt")
    (tmp / "corrupt" / "checkpoint.pt").write_bytes(b"\x00garbage" * 10)
    whole = (done / "checkpoint.pt").read_bytes()
    (tmp / "cut" / "checkpoint.pt").write_bytes(whole[:len(whole) // 2])
    return {"tmp": tmp, "root": tiny_root, "done": done, "mixed": tmp / "mixed", "corrupt": tmp / "corrupt",
            "cut": tmp / "cut"}


def call(argv: list[str], places: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["regrun", *(a.format(**places) for a in argv)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


def one_line_error(code: int, err: str, fragment: str, prefix: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err
    assert "weights_only" not in err  # never advise loading a bad file unsafely
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(("case", "argv", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_a_bad_run_config_is_one_line_and_exit_2(case: str, argv: list[str], fragment: str,
                                                  places: dict[str, Path], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    base = ["dataset.root={root}", "dataset.download=false", "trainer.device=cpu", "trainer.epochs=1",
            "trainer.batch_size=32", f"hydra.run.dir={tmp_path}/run"]
    code, err = call(base + argv, places, monkeypatch, capsys)
    one_line_error(code, err, fragment.format(**places), "regrun: error:")
    assert not (tmp_path / "run" / "model.pt").exists()  # nothing trained to completion
    summary = tmp_path / "run" / "summary.json"
    if summary.exists():  # refused before training: recorded as a failed run
        assert json.loads(summary.read_text())["status"] == "failed"


@pytest.mark.parametrize(("case", "argv", "fragment"), SUBCOMMAND_CASES, ids=[c[0] for c in SUBCOMMAND_CASES])
def test_a_bad_subcommand_input_is_one_line_and_exit_2(case: str, argv: list[str], fragment: str,
                                                        places: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    def run_files() -> dict[Path, bytes]:  # all but the lock, which names its last holder
        return {p: p.read_bytes() for p in places["done"].rglob("*") if p.is_file() and p.name != LOCK}

    before = run_files()
    code, err = call(argv, places, monkeypatch, capsys)
    one_line_error(code, err, fragment.format(**places), f"regrun {argv[0]}: error:")
    assert run_files() == before  # nothing overwritten


# model=custom: (case, model.factory and other arguments, the whole message after `regrun: error: `),
# run in a folder holding conftest's USER_MODELS as my_models.py and its FAILING_MODULES.
FACTORY_CASES = [
    ("no factory given", [], "model.factory must be MODULE:FUNCTION (e.g. my_models:make_net, MODULE in the "
     "current directory or on the Python path), got None"),
    ("not MODULE:FUNCTION", ["model.factory=my_models.make_net"], "model.factory must be MODULE:FUNCTION (e.g. "
     "my_models:make_net, MODULE in the current directory or on the Python path), got 'my_models.make_net'"),
    ("module not found", ["model.factory=my_modles:make_net"],
     "model.factory: no module 'my_modles' in the current directory ({cwd}) or on the Python path"),
    ("import error inside the module", ["model.factory=needs_missing_package:make_net"], "model.factory: importing "
     "'needs_missing_package' failed: ModuleNotFoundError: No module named 'package_that_is_not_installed'"),
    ("module raising as it is imported", ["model.factory=fails_on_import:make_net"],
     "model.factory: importing 'fails_on_import' failed: RuntimeError: no GPU here"),
    ("module with a syntax error", ["model.factory=bad_syntax:make_net"],
     "model.factory: importing 'bad_syntax' failed: SyntaxError: invalid syntax (bad_syntax.py, line 1)"),
    ("attribute missing", ["model.factory=my_models:make_nett"],
     "model.factory: my_models has no attribute 'make_nett'; it defines: Block, ResNet, explodes, make_net, returns_dict"),
    ("not callable", ["model.factory=my_models:WIDTH"],
     "model.factory: my_models:WIDTH is not callable (int); name a function or class"),
    ("returns something else", ["model.factory=my_models:returns_dict"],
     "model.factory: my_models:returns_dict returned dict, not a torch.nn.Module"),
    ("unexpected keyword", ["model.factory=my_models:make_net", "+model.widht=8"],
     "model.widht: not an option of model factory 'my_models:make_net'; allowed: width, depth"),
    ("factory raising", ["model.factory=my_models:explodes"],
     "model.factory: my_models:explodes raised RuntimeError: out of memory"),
]


@pytest.mark.parametrize(("case", "argv", "message"), FACTORY_CASES, ids=[c[0] for c in FACTORY_CASES])
def test_a_bad_model_factory_is_one_line_and_exit_2(case: str, argv: list[str], message: str, user_models: Path,
                                                    places: dict[str, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    base = ["dataset.root={root}", "dataset.download=false", "trainer.device=cpu", "trainer.epochs=1",
            f"hydra.run.dir={tmp_path}/run", "model=custom"]
    code, err = call(base + argv, places, monkeypatch, capsys)
    one_line_error(code, err, message.format(cwd=user_models), "regrun: error:")
    assert err.strip() == "regrun: error: " + message.format(cwd=user_models)


# penalty: MODULE:FUNCTION, in a target of its own on fc1's weights (or its output, for
# `dims`): (case, the penalty and other arguments, a fragment of the one line).
P = "+reg.targets.mine.penalty"
PENALTY_CASES = [
    ("penalty module not found", [f"{P}=my_penaltys:squared_l1"],
     "reg.targets.mine.penalty: no module 'my_penaltys' in the current directory"),
    ("penalty attribute missing", [f"{P}=my_penalties:squared_l2"],
     "reg.targets.mine.penalty: my_penalties has no attribute 'squared_l2'; it defines: nan, no_dims, raises, "
     "squared_l1, two_tensors, vector"),
    ("penalty not callable", [f"{P}=my_penalties:NOT_A_FUNCTION"],
     "reg.targets.mine.penalty: my_penalties:NOT_A_FUNCTION is not callable (int)"),
    ("penalty taking two tensors", [f"{P}=my_penalties:two_tensors"],
     "reg.targets.mine.penalty: my_penalties:two_tensors cannot be called as fn(x) with one tensor: missing a "
     "required argument: 'y'"),
    ("penalty without dims on activations", [f"{P}=my_penalties:no_dims", "+reg.targets.mine.site=activations"],
     "reg.targets.mine.penalty: my_penalties:no_dims takes no `dims`, which reduction=batch_mean on activations "
     "passes"),
    ("penalty returning a vector", [f"{P}=my_penalties:vector"],
     "reg.targets.mine.penalty: my_penalties:vector returned shape (8, 784) torch.float32 on an example batch; "
     "a penalty must be a floating-point scalar"),
    ("penalty raising", [f"{P}=my_penalties:raises"],
     "reg.targets.mine.penalty: my_penalties:raises raised ValueError: bad penalty on an example batch"),
    ("penalty NaN", [f"{P}=my_penalties:nan"],
     "reg.targets.mine.penalty: my_penalties:nan is nan on an example batch"),
]


@pytest.mark.parametrize(("case", "argv", "fragment"), PENALTY_CASES, ids=[c[0] for c in PENALTY_CASES])
def test_a_bad_penalty_function_is_one_line_and_exit_2(case: str, argv: list[str], fragment: str, user_models: Path,
                                                       places: dict[str, Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    base = ["dataset.root={root}", "dataset.download=false", "trainer.device=cpu", "trainer.epochs=1",
            f"hydra.run.dir={tmp_path}/run", "model.hidden=[8]", "+reg.targets.mine.layers=[fc1]",
            "+reg.targets.mine.site=weights", "+reg.targets.mine.lambda=0.1"]
    base = [a for a in base if not any(a.split("=")[0] == b.split("=")[0] for b in argv)]
    code, err = call(base + argv, places, monkeypatch, capsys)
    one_line_error(code, err, fragment.format(cwd=user_models), "regrun: error:")
    assert not (tmp_path / "run" / "metrics.csv").exists()  # refused before training


def test_the_table_holds_at_least_twenty_cases() -> None:
    assert len(CASES) + len(SUBCOMMAND_CASES) >= 20
