"""`regrun prune PATH...`: evaluate completed runs with their smallest weights set to zero.

For each completed run at or under the paths (a run directory, a sweep's folder, or a
folder holding them), without retraining: its final model, the task's test figures with
the smallest-magnitude chosen weights zeroed at each level, globally (one threshold over
all of them) and one layer at a time (the sensitivity analysis); with --finetune-epochs N,
each globally pruned model also trained N epochs more with its pruned weights held at zero
(finetuned_test_<figure>). Written to prune.json in the run directory, which `regrun
compare` reads (prune90_test_acc, prune90_finetuned_test_acc, and --plot's curves).

The settings are the run's own `prune` node (conf/config.yaml), which the options override.
"""

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

from regrun.analysis.runs import find_runs
from regrun.console import shared_console
from regrun.errors import RegrunError
from regrun.layout import CONFIG, FINETUNE_EPOCHS, PRUNE, split_figure
from regrun.rundir.lock import one_writer
from regrun.rundir.resume import read_config, require_run


class _Parser(argparse.ArgumentParser):
    """argparse that raises a one-line error instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise RegrunError(message)


def _floats(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give fractions separated by commas, e.g. 0.5,0.9") from None


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parser() -> argparse.ArgumentParser:
    """The command line of `regrun prune`."""
    p = _Parser(prog="regrun prune", description=__doc__.split("\n\n")[1])
    p.add_argument("paths", nargs="+", metavar="PATH", help=f"run directories (holding {CONFIG}), sweep roots, "
                                                             "or folders holding them")
    p.add_argument("--levels", type=_floats, metavar="F,F", help="fractions of the chosen weights to zero, "
                                                                  "in (0, 1] (default: the run's prune.levels)")
    p.add_argument("--layers", type=_names, metavar="P,P", help="layers to prune (name patterns, as a target's)")
    p.add_argument("--types", type=_names, metavar="T,T", help="layer types to prune (default: Linear and Conv)")
    p.add_argument("--exclude", type=_names, metavar="P,P", help="layers left alone (name patterns)")
    p.add_argument("--no-per-layer", dest="per_layer", action="store_false", default=None,
                   help="prune globally only, not each layer alone")
    p.add_argument("--finetune-epochs", dest=FINETUNE_EPOCHS, type=int, metavar="N",
                   help="then train each globally pruned model N epochs more, its pruned weights held at zero, "
                        "and report its figures as finetuned_test_<figure> (default: the run's "
                        "prune.finetune_epochs; 0: none)")
    p.add_argument("--device", help="evaluate on this device (default: the run's trainer.device)")
    p.add_argument("--data-root", metavar="DIR", help="the dataset's root, if it moved (dataset.root)")
    return p


def main(argv: list[str]) -> int:
    """Run `regrun prune`; returns the exit code (2 with a one-line error on bad input)."""
    try:
        args = parser().parse_args(argv)
        given = {key: value for key in ("levels", "layers", "types", "exclude", "per_layer", FINETUNE_EPOCHS)
                 if (value := getattr(args, key)) is not None}
        _settings({}, given)  # the options refused before any run is read
        runs = find_runs(args.paths)
        done = [run.path for run in runs if run.completed]
        for run in runs:
            if not run.completed:
                print(f"regrun prune: {run.path}: skipped ({run.status}; only a completed run has a final model)",
                      file=sys.stderr)
        if not done:
            raise RegrunError(f"no completed run under {', '.join(args.paths)}")
        for path in done:
            prune_run(path, given, args.device, args.data_root)
    except RegrunError as err:
        print(f"regrun prune: error: {err}", file=sys.stderr)
        return 2
    return 0


def _settings(node: Any, given: dict[str, Any]) -> Any:
    """The run's `prune` node with the options given on the command line, checked."""
    from regrun.jobs.pruning import PruneSettings
    from regrun.schema import read_node

    return read_node("prune", {**(node if isinstance(node, dict) else {}), **given}, PruneSettings)


def prune_run(path: Path, given: dict[str, Any], device: str | None, data_root: str | None) -> list[dict[str, Any]]:
    """Evaluate one completed run's final model pruned; write its prune.json and show it."""
    require_run(path)  # before the lock, which would create a file in any folder
    with one_writer(path):
        from regrun.jobs.display import show_pruning  # torch: only once a run is to be pruned
        from regrun.jobs.pruning import evaluate_pruning
        from regrun.jobs.run import build, training_data, training_of
        from regrun.rundir.checkpoint import final_model_state
        from regrun.rundir.files import RunDir

        cfg = _with_places(read_config(path), device, data_root)
        settings = _settings(cfg.get("prune"), given)
        setup = build(cfg)
        try:
            setup.model.load_state_dict(final_model_state(path))
        except (RuntimeError, ValueError, KeyError) as err:
            raise RegrunError(f"{path}: its model does not fit its config: {str(err).splitlines()[0][:200]}") from err
        data = training_data(setup)
        rows = evaluate_pruning(setup.model, setup.task, data, settings, training_of(setup))
        RunDir(path).write_json(PRUNE, rows)
    console = shared_console()
    show_pruning(rows, split_figure("test", setup.task.headline), console)
    console.print(f"{PRUNE} written to {path}", highlight=False)
    return rows


def _with_places(cfg: dict[str, Any], device: str | None, data_root: str | None) -> dict[str, Any]:
    """The run's config on another device, or with its data elsewhere."""
    trainer, dataset = dict(cfg["trainer"]), dict(cfg["dataset"])
    if device is not None:
        trainer["device"] = device
    if data_root is not None:
        if "root" not in dataset:
            raise RegrunError(f"--data-root: dataset {dataset.get('name')!r} takes no root")
        dataset["root"] = data_root
    return {**cfg, "trainer": trainer, "dataset": dataset}

