"""Hydra's own errors, table-driven, through the real entry point (`regrun.cli.main`, in
process): a typo in a group, an option or a key, an override Hydra cannot parse, a value its
schema refuses, a flag's bad value. Each ends in one line saying the fix that works on a
command line, exit 2, and nothing written: not even the explicit run folder."""

import sys
from pathlib import Path

import pytest
from test_errors import one_line_error

from regrun.cli import main
from regrun.cli.hydra_errors import explain

pytestmark = pytest.mark.usefixtures("keep_signal_handlers")  # main() installs its own

REG = "allowed: elastic_net, group_lasso, l1_activations, l1_code, l1_weights, l2_weights, none (reg/NAME.yaml in conf/ or --config-dir)"
# (case, arguments (before the common ones: flags come first), the whole message after `regrun: error: `).
CASES = [
    ("typo in a group", ["modle=mlp"], "modle=mlp: the config has no key 'modle'; did you mean model=mlp?"),
    ("typo in a nested group", ["hydra/lancher=joblib"], "hydra/lancher=joblib: no config group 'hydra/lancher'; "
     "did you mean hydra/launcher=joblib? allowed: dataset, experiment, hydra, hydra/env, hydra/help, "
     "hydra/hydra_help, hydra/hydra_logging, hydra/job_logging, hydra/launcher, hydra/output, hydra/sweeper, "
     "hydra/sweeper/sampler, logger, model, optimizer, reg, task"),
    ("typo in a model option", ["model=mpl"], "model=mpl: no option 'mpl' in group model; did you mean model=mlp? "
     "allowed: autoencoder, cnn, custom, mlp (model/NAME.yaml in conf/ or --config-dir)"),
    ("typo in a logger option", ["logger=tensorbaord"], "logger=tensorbaord: no option 'tensorbaord' in group logger; "
     "did you mean logger=tensorboard? allowed: csv, mlflow, tensorboard (logger/NAME.yaml in conf/ or --config-dir)"),
    ("typo in an experiment", ["experiment=sparse_autoencodr"], "experiment=sparse_autoencodr: no option "
     "'sparse_autoencodr' in group experiment; did you mean experiment=sparse_autoencoder? allowed: "
     "l1_all_params_collapse, l1_and_l2_norm_two_layers, l1_relu_outputs_hook, per_layer_decay_regression, "
     "sparse_autoencoder, "
     "sparse_conv_autoencoder (experiment/NAME.yaml in conf/ or --config-dir)"),
    ("typo in one option of a list", ["reg=[l1_activations,l1_wieghts]"], "reg=[l1_activations,l1_wieghts]: no option "
     f"'l1_wieghts' in group reg; did you mean reg=[l1_activations,l1_weights]? {REG}"),
    ("typo in a launcher", ["hydra/launcher=jobib"], "hydra/launcher=jobib: no option 'jobib' in group hydra/launcher; "
     "did you mean hydra/launcher=joblib? allowed: basic, fused, joblib, ray_cluster, slurm, submitit_local, "
     "submitit_slurm (hydra/launcher/NAME.yaml in conf/ or --config-dir)"),
    ("an empty option", ["dataset="], "dataset=: no option given; allowed: cifar10, fashion_mnist, kmnist, mnist, "
     "teacher, tensors, toy_regression (dataset/NAME.yaml in conf/ or --config-dir)"),
    ("a group given null", ["model=null"], "model=null: a config group takes an option name (or a list of them), "
     "not null; allowed: autoencoder, cnn, custom, mlp"),
    ("typo in a key", ["trainer.epoch=1"], "trainer.epoch=1: trainer has no key 'epoch'; did you mean trainer.epochs=1?"),
    ("typo in a target's key", ["reg=l1_activations", "reg.targets.l1_activations.lambd=3"],
     "reg.targets.l1_activations.lambd=3: reg.targets.l1_activations has no key 'lambd'; did you mean "
     "reg.targets.l1_activations.lambda=3?"),
    ("typo in a key deleted", ["~trainer.epoch"], "~trainer.epoch: trainer has no key 'epoch'; did you mean ~trainer.epochs?"),
    ("typo in a Hydra key", ["hydra.run.dirr=x"], "hydra.run.dirr=x: hydra.run has no key 'dirr'; did you mean hydra.run.dir=x?"),
    ("a key under a value", ["trainer.epochs.x=3"], "trainer.epochs.x=3: trainer.epochs is a value (5), not a mapping of keys"),
    ("an unknown key with nothing close", ["trainer.zzz=1"], "trainer.zzz=1: trainer has no key 'zzz'; allowed: epochs, "
     "batch_size, device, log_every, log_steps, eval_every, eval_batch_size, checkpoint_every"),
    ("an optimizer option regrun takes, without +", ["optimizer.foreach=true"],
     "optimizer.foreach=true: optimizer has no key 'foreach' yet; to add it, write +optimizer.foreach=true"),
    ("an optimizer group without +", ["optimizer.groups.fc1={layers:[fc1],lr:0.1}"],
     "optimizer.groups.fc1={layers:[fc1],lr:0.1}: optimizer.groups has no key 'fc1' yet; to add it, write "
     "+optimizer.groups.fc1={layers:[fc1],lr:0.1}"),
    ("+ on an experiment", ["+experiment=sparse_autoencoder"], "+experiment=sparse_autoencoder: experiment is a config "
     "group of the defaults already; choose its option with experiment=sparse_autoencoder (no +)"),
    ("+ on a key in the config", ["+seed=3"], "+seed=3: seed is in the config already; set it with seed=3"),
    ("several values without -m", ["seed=1,2"], "seed=1,2: several values: to sweep over them, add -m "
     "(regrun -m seed=1,2); for a list, write 'seed=[1,2]'"),
    ("a comma list where a list is wanted", ["reg=l1_activations", "reg.targets.l1_activations.layers=fc1,fc2"],
     "reg.targets.l1_activations.layers=fc1,fc2: several values: to sweep over them, add -m "
     "(regrun -m reg.targets.l1_activations.layers=fc1,fc2); for a list, write "
     "'reg.targets.l1_activations.layers=[fc1,fc2]'"),
    ("an unclosed bracket", ["trainer.epochs=[1"], "trainer.epochs=[1: not an override Hydra can read (no viable "
     "alternative at input '[1'); quote a value holding brackets, braces, commas, quotes or spaces for the shell, e.g. "
     "'key=[a,b]' (grammar: https://hydra.cc/docs/advanced/override_grammar/basic/)"),
    ("an override without a value", ["trainer.epochs"],
     "trainer.epochs: an override needs a value: trainer.epochs=VALUE (or ~trainer.epochs to delete the key)"),
    ("a string where Hydra's launcher wants an int", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=two"],
     "hydra.launcher.n_jobs=two: must be an integer, got 'two' (Hydra's schema JobLibLauncherConf)"),
    ("a float where Hydra's launcher wants an int", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=1.5"],
     "hydra.launcher.n_jobs=1.5: must be an integer, got '1.5' (Hydra's schema JobLibLauncherConf)"),
    ("a string where Hydra wants a bool", ["hydra.job.chdir=maybe"],
     "hydra.job.chdir=maybe: must be true or false, got 'maybe' (Hydra's schema JobConf)"),
    ("a key of another launcher", ["hydra.launcher.n_jobs=3"],
     "hydra.launcher.n_jobs=3: hydra.launcher has no key 'n_jobs'; allowed: _target_"),
    ("an empty run folder", ["hydra.run.dir="], "hydra.run.dir=: an empty folder would write the run into the current "
     "directory; allowed: a folder path, e.g. hydra.run.dir=outputs/my_run"),
    ("an empty run folder, quoted", ["hydra.run.dir=''"], "hydra.run.dir='': an empty folder would write the run into "
     "the current directory; allowed: a folder path, e.g. hydra.run.dir=outputs/my_run"),
    ("an empty sweep folder", ["-m", "seed=0,1", "hydra.sweep.dir="], "hydra.sweep.dir=: an empty folder would write "
     "the run into the current directory; allowed: a folder path, e.g. hydra.sweep.dir=outputs/my_run"),
    ("a sweep over a typo in an option", ["-m", "model=mlp,mpl"],
     "model=mlp,mpl: no option 'mpl' in group model; allowed: autoencoder, cnn, custom, mlp (model/NAME.yaml in conf/ "
     "or --config-dir)"),
    ("a sweep over a list with a typo", ["-m", "reg=[l1_activations],[l2_wieghts]"], "reg=[l1_activations],[l2_wieghts]: "
     f"no option 'l2_wieghts' in group reg; did you mean reg=[l1_activations],[l2_weights]? {REG}"),
    ("a typo in a preset of a sweep over its keys", ["-m", "reg=l1_activationz", "reg.targets.l1_activations.lambda=0,1"],
     f"reg=l1_activationz: no option 'l1_activationz' in group reg; did you mean reg=l1_activations? {REG}"),
    ("a sweep over a typo in a key", ["-m", "trainer.epoch=1,2"],
     "trainer.epoch=1,2: trainer has no key 'epoch'; did you mean trainer.epochs=1,2?"),
    ("a typo with --cfg", ["--cfg", "job", "modle=cnn"], "modle=cnn: the config has no key 'modle'; did you mean model=cnn?"),
    ("a config folder that does not exist", ["--config-dir", "{tmp}/nowhere"], "--config-dir {tmp}/nowhere: no such directory"),
    ("a config name that does not exist", ["--config-name", "nope"],
     "--config-name nope: no such config in conf/ (or --config-dir); regrun's is config"),
]


def call(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["regrun", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(("case", "argv", "message"), CASES, ids=[c[0] for c in CASES])
def test_hydras_errors_are_one_line_with_the_fix(case: str, argv: list[str], message: str, tiny_root: Path,
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    run_dir = [] if any(a.startswith("hydra.run.dir") for a in argv) else [f"hydra.run.dir={tmp_path}/run"]
    base = [f"dataset.root={tiny_root}", "dataset.download=false", "trainer.device=cpu", "trainer.epochs=1", *run_dir]
    code, err = call([*(a.replace("{tmp}", str(tmp_path)) for a in argv), *base], monkeypatch, capsys)
    one_line_error(code, err, "", "regrun: error:")
    assert err.strip() == "regrun: error: " + message.replace("{tmp}", str(tmp_path))
    assert not any(tmp_path.iterdir())  # not even the explicit run folder, nor its lock


def test_explain_names_the_last_override_of_a_group() -> None:
    """Hydra takes the last of two overrides of one group: the message names that one."""
    from hydra.errors import MissingConfigException

    err = MissingConfigException("", "reg/l1_everything", ["l1_activations", "none"])
    assert explain(err, ["reg=l1_activations", "reg=l1_everything"]).startswith(
        "reg=l1_everything: no option 'l1_everything' in group reg; allowed: l1_activations, none")


def test_the_table_holds_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30
