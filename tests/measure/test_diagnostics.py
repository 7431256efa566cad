"""Diagnostics: each warning fires on the figures that call for it and stays silent on the
figures that look like it but do not; a sane run has none."""

from typing import Any

import pytest

from regrun.measure.diagnostics import Chance, decay_by_parameter, diagnose

ACC = Chance("test_acc", 0.1135, True, "always predicting the most frequent class", 2.3010)


def row(target: str, tensor: str, site: str = "weights", penalty: str = "l1", lam: float = 1e-4, **extra) -> dict:
    return {"target": target, "site": site, "penalty": penalty, "lambda": lam, "tensor": tensor, **extra}


def weight(name: str, zero_frac: float, numel: int = 100, below: float | None = None) -> dict:
    """A weight tensor's statistics; `below`: its fraction under 1e-3 (default: its zeros)."""
    return {"name": name, "numel": numel, "zero_frac": zero_frac, "below_0.001": zero_frac if below is None else below}


def weights(*rows: dict) -> dict:
    return {"thresholds": [1e-3, 1e-4, 1e-2], "weights": list(rows), "activations": {}}


def units(dead: int, total: int) -> dict:
    return {"activations": {"act1": {"units": total, "dead_units": dead}}}


def epoch(n: int, task: float, **figures: float) -> dict:
    """A metrics row: the task loss, penalty columns (`penalty_<t>`, `lambda_<t>`) and test figures."""
    row: dict[str, Any] = {"epoch": n, "train_task_loss": task}
    penalty = 0.0
    for key, value in figures.items():
        if key.startswith("penalty_"):
            row[f"penalty.{key.removeprefix('penalty_')}.weighted"] = value
            penalty += value
        elif key.startswith("lambda_"):
            row[f"lambda.{key.removeprefix('lambda_')}"] = value
        else:
            row[key] = value
    return row | {"train_penalty_total": penalty, "train_total_loss": task + penalty}


ACT = [row("act", "act1", site="activations")]
L1 = [row("w", "fc1.weight")]
L2 = [row("w", "fc1.weight", penalty="l2")]
PROXIMAL = [row("w", "fc1.weight", proximal=True)]

# code → {case: diagnose's arguments}; `fires` cases must give exactly [code], `silent` ones nothing.
FIRES: dict[str, dict[str, dict[str, Any]]] = {
    "penalty_dominates": {
        "3 of a loss of 4": {"rows": [epoch(1, 1.0, penalty_w=3.0), epoch(2, 1.0, penalty_w=0.2)]},
        "gradient L1 beside a proximal one": {"rows": [epoch(1, 0.1, penalty_w=2.4, penalty_g=2.6, test_acc=0.96)],
                                              "targets": [*PROXIMAL, row("g", "fc2.weight")], "chance": ACC},
    },
    "chance_level": {
        "majority class": {"rows": [{"test_acc": 0.1135}], "chance": ACC},
        "R² of 0.01": {"rows": [{"test_r2": 0.01}], "chance": Chance("test_r2", 0.0, True, "predicting the mean")},
    },
    "loss_exploded": {
        "AdamW at lr=1e6: test loss 1e22": {"rows": [epoch(1, 3e20, test_loss=2e21, test_acc=0.5),
                                                     epoch(2, 8e21, test_loss=1e22, test_acc=0.5)], "chance": ACC},
        "one epoch, finite": {"rows": [epoch(1, 4e5, test_acc=0.5)], "chance": ACC},
        "0.4 to 30, no trivial predictor": {"rows": [epoch(1, 0.4), epoch(5, 30.0)]},
    },
    "dead_layer": {"64 of 64": {"targets": ACT, "sparsity": units(64, 64)}},
    "mostly_dead": {
        "30 of 32": {"targets": ACT, "sparsity": units(30, 32)},
        "39 of 64 SAE latents": {"targets": ACT, "sparsity": units(39, 64)},
    },
    "zeroed_tensor": {"all of fc1.weight": {"targets": PROXIMAL, "sparsity": weights(weight("fc1.weight", 1.0))}},
    "lambda_negligible": {
        "1e-6 of the task loss": {"rows": [epoch(1, 0.5, penalty_act=5e-7)], "targets": ACT},
        "while its window lasted": {"rows": [epoch(1, 0.5, penalty_act=5e-7, lambda_act=1e-9),
                                             epoch(2, 0.4, penalty_act=0.0, lambda_act=0.0)], "targets": ACT},
    },
    "subgradient_l1": {"60% below 1e-3, none at 0": {"targets": L1,
                                                     "sparsity": weights(weight("fc1.weight", 0.0, below=0.6))}},
    "double_l2": {
        "weight_decay on every parameter": {"targets": L2, "decay": {"fc1.weight": 0.01, "fc1.bias": 0.01}},
        "elastic net, decay on fc1's group": {"targets": [row("w", "fc1.weight", penalty="elastic_net", l1_ratio=0.5)],
                                              "decay": {"fc1.weight": 0.1}},
    },
}

SILENT: dict[str, dict[str, dict[str, Any]]] = {
    "penalty_dominates": {
        "proximal L1 at 96% accuracy": {"rows": [epoch(1, 0.1, penalty_w=2.4, test_acc=0.96)], "targets": PROXIMAL,
                                        "sparsity": weights(weight("fc1.weight", 0.5)), "chance": ACC},
        "most of a learned task's tiny loss": {"rows": [epoch(3, 0.002, penalty_w=0.0345)], "chance": ACC},
    },
    "chance_level": {"97% accuracy": {"rows": [{"test_acc": 0.97}], "chance": ACC}},
    "loss_exploded": {
        "overfitting: test loss 0.03 to 0.5": {"rows": [epoch(1, 0.4, test_loss=0.03), epoch(9, 0.01, test_loss=0.5)],
                                               "chance": ACC},
        "a slow first epoch": {"rows": [epoch(1, 2.2, test_loss=2.1), epoch(2, 0.3, test_loss=0.3)], "chance": ACC},
    },
    "dead_layer": {"3 of 64": {"targets": ACT, "sparsity": units(3, 64)}},
    "mostly_dead": {
        "half, 16 of 32": {"targets": ACT, "sparsity": units(16, 32)},
        "an untargeted layer, 30 of 32": {"targets": [row("act", "act2", site="activations")],
                                          "sparsity": units(30, 32)},
    },
    "zeroed_tensor": {"40% zeros": {"targets": PROXIMAL, "sparsity": weights(weight("fc1.weight", 0.4))}},
    "lambda_negligible": {
        "1e-3 of the task loss": {"rows": [epoch(1, 0.5, penalty_act=5e-4)], "targets": ACT},
        "its window ended": {"rows": [epoch(1, 0.5, penalty_act=0.05, lambda_act=1e-2),
                                      epoch(2, 0.4, penalty_act=0.0, lambda_act=0.0)], "targets": ACT},
        "λ = 0, a baseline": {"rows": [epoch(1, 0.5, penalty_w=0.0)], "targets": [row("w", "act1", lam=0.0)]},
    },
    "subgradient_l1": {
        "as init leaves it: 3% below 1e-3": {"targets": L1, "sparsity": weights(weight("fc1.weight", 0.0, below=0.03))},
        "the CNN at the preset's λ: 38% below 1e-3": {"targets": L1,
                                                       "sparsity": weights(weight("fc1.weight", 0.0, below=0.38))},
        "exact zeros": {"targets": L1, "sparsity": weights(weight("fc1.weight", 0.4))},
        "proximal": {"targets": PROXIMAL, "sparsity": weights(weight("fc1.weight", 0.0, below=0.6))},
        "no threshold at or under 1e-3": {"targets": L1, "sparsity": weights(weight("fc1.weight", 0.0, below=0.6))
                                          | {"thresholds": [1e-2]}},
    },
    "double_l2": {
        "no weight decay": {"targets": L2, "decay": {"fc1.weight": 0.0}},
        "decay on other parameters only": {"targets": L2, "decay": {"fc1.weight": 0.0, "head.weight": 0.1}},
        "L1 beside decay": {"targets": L1, "decay": {"fc1.weight": 0.01}},
    },
}


def codes(warnings: list[dict]) -> list[str]:
    return [w["code"] for w in warnings]


def run_case(case: dict[str, Any]) -> list[dict[str, str]]:
    return diagnose(case.get("rows", []), case.get("targets", []), case.get("sparsity"), case.get("chance"),
                    case.get("decay"))


def cases(table: dict[str, dict[str, dict[str, Any]]]) -> list:
    return [pytest.param(code, case, id=f"{code}: {name}") for code, named in table.items() for name, case in named.items()]


@pytest.mark.parametrize(("code", "case"), cases(FIRES))
def test_each_diagnostic_fires_where_it_must(code: str, case: dict[str, Any]) -> None:
    (warning,) = run_case(case)
    assert warning["code"] == code
    assert "\n" not in warning["message"]


@pytest.mark.parametrize(("code", "case"), cases(SILENT))
def test_each_diagnostic_is_silent_where_it_must(code: str, case: dict[str, Any]) -> None:
    assert run_case(case) == []


def test_every_diagnostic_has_a_case_of_each_kind() -> None:
    import regrun.measure.diagnostics as module

    doc = module.__doc__ or ""
    listed = [line.split()[0] for line in doc.splitlines() if line.startswith("    ") and line[4] != " "]
    # CODES is what the documentation's table is generated from: the same codes, in the same order
    assert list(FIRES) == list(SILENT) == listed == list(module.CODES)


def test_thread_004_warns_of_the_dominant_penalty_chance_level_and_the_useless_subgradient() -> None:
    # The thread's own log of its first epoch, "Loss 65.43456 (of which 63.13525 L1 loss)",
    # then regrun's final figures of its recipe: every weight below 1e-3, none at 0.
    first = epoch(1, 2.2993, penalty_l1_all=63.135)
    final = epoch(5, 2.3012, penalty_l1_all=0.638, test_acc=0.1135, test_loss=2.3026)
    targets = [row("l1_all", "fc1.weight", lam=1.0), row("l1_all", "fc1.bias", lam=1.0)]
    sparsity = weights(weight("fc1.weight", 0.0, below=1.0), weight("fc1.bias", 0.0, below=1.0))
    warnings = diagnose([first, final], targets, sparsity, ACC, {"fc1.weight": 0.01, "fc1.bias": 0.01})
    assert codes(warnings) == ["penalty_dominates", "chance_level", "subgradient_l1"]
    assert warnings[0]["message"].startswith("the penalties were 96% of the training loss in epoch 1 (63.13 of "
                                             "65.43), more than the loss of learning nothing (2.301)")
    assert warnings[1]["message"].startswith("test_acc = 0.1135 is at chance level: always predicting the most "
                                             "frequent class scores 0.1135")
    assert warnings[2]["message"] == ("l1_all: 100.0% of its weights are below 0.001 but 0.0% exactly zero (gradient "
                                      "steps jump over 0): set reg.targets.l1_all.proximal=true for exact zeros")


def test_messages_name_the_figures_and_what_to_try() -> None:
    (exploded,) = run_case(FIRES["loss_exploded"]["AdamW at lr=1e6: test loss 1e22"])
    assert exploded["message"] == ("train_task_loss ended at 8e+21, 3.5e+21× the loss of learning nothing (2.301): "
                                   "training diverged while staying finite; lower optimizer.lr (by 10× or more) or "
                                   "clip the gradients")
    (dead,) = run_case(FIRES["mostly_dead"]["30 of 32"])
    assert dead["message"] == ("30 of 32 units of act1 (targeted by act, 94%) are zero on every test sample; lower "
                               "reg.targets.act.lambda or warm it up (reg.targets.act.warmup_steps)")
    (negligible,) = run_case(FIRES["lambda_negligible"]["while its window lasted"])
    assert negligible["message"] == ("act: λ·penalty = 5e-07 is 1.0e-06 of the task loss (0.5) in epoch 1; λ = 1e-09 "
                                     "is too small to change anything: try λ near 1e-05 (1% of the loss)")
    (double,) = run_case(FIRES["double_l2"]["weight_decay on every parameter"])
    assert double["message"].startswith("w: an L2 penalty on fc1.weight, which the optimizer's weight_decay=0.01")


def test_the_decay_of_each_parameter_is_read_from_its_group() -> None:
    groups = [{"group": "fc1_decay", "params": ["fc1.weight"], "options": {"weight_decay": 0.1}},
              {"group": "default", "params": ["fc1.bias", "head.weight"], "options": {"lr": 1e-3}}]
    assert decay_by_parameter(groups) == {"fc1.weight": 0.1, "fc1.bias": 0.0, "head.weight": 0.0}


def test_a_run_of_thread_004s_recipe_ends_with_warnings_and_a_sane_run_with_none(make_cfg, tmp_path) -> None:
    """Through run(): the warnings land in summary.json (tiny data; the real recipe is an
    experiment preset, checked on MNIST by tests/cli/test_realdata.py)."""
    from regrun.jobs.run import run

    collapse = run(make_cfg("reg=l1_weights", "reg.targets.l1_weights.lambda=1.0", "reg.targets.l1_weights.site=params",
                            "optimizer.lr=1e-4", "model.hidden=[64,32]"), tmp_path / "collapse")
    assert {"penalty_dominates", "chance_level"} <= set(codes(collapse["warnings"]))
    sane = run(make_cfg("reg=l1_activations", "trainer.epochs=3"), tmp_path / "sane")
    assert sane["final"]["test_acc"] > 0.5 and sane["warnings"] == []


def test_a_run_that_explodes_finite_warns_and_one_whose_lambda_window_ended_does_not(make_cfg, tmp_path) -> None:
    from regrun.jobs.run import run

    exploded = run(make_cfg("optimizer.lr=1e6"), tmp_path / "exploded")
    assert exploded["status"] == "completed" and "loss_exploded" in codes(exploded["warnings"])
    windowed = run(make_cfg("reg=l1_activations", "trainer.epochs=3", "reg.targets.l1_activations.end_epoch=2"),
                   tmp_path / "windowed")
    assert windowed["final"]["lambda.l1_activations"] == 0.0 and windowed["warnings"] == []
