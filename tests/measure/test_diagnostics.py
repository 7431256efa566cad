"""Diagnostics: each warning fires on the figures that call for it, and a sane run has none."""

import pytest

from regrun.measure.diagnostics import Chance, diagnose

ACC = Chance("test_acc", 0.1135, True, "always predicting the most frequent class", 2.3010)


def row(target: str, tensor: str, site: str = "weights", penalty: str = "l1", lam: float = 1e-4, **extra) -> dict:
    return {"target": target, "site": site, "penalty": penalty, "lambda": lam, "tensor": tensor, **extra}


def weight(name: str, zero_frac: float, numel: int = 100) -> dict:
    return {"name": name, "numel": numel, "zero_frac": zero_frac}


# Thread 004's run: L1 with λ=1 on every parameter, a model at chance, 97% of the loss penalty.
THREAD_004 = {
    "final": {"train_task_loss": 2.3012, "penalty.l1_all.raw": 0.638, "penalty.l1_all.weighted": 0.638,
              "train_penalty_total": 0.638, "train_total_loss": 2.9392, "test_acc": 0.1135},
    "targets": [row("l1_all", "fc1.weight", lam=1.0), row("l1_all", "fc1.bias", lam=1.0)],
    "sparsity": {"weights": [weight("fc1.weight", 0.0), weight("fc1.bias", 0.0)], "activations": {}},
}


def codes(warnings: list[dict]) -> list[str]:
    return [w["code"] for w in warnings]


def test_thread_004_warns_of_the_dominant_penalty_chance_level_and_the_useless_subgradient() -> None:
    # The thread's own log of its first epoch: "Loss 65.43456 (of which 63.13525 L1 loss)".
    first = {"epoch": 1, "train_task_loss": 2.2993, "train_penalty_total": 63.135, "train_total_loss": 65.435}
    warnings = diagnose([first, THREAD_004["final"]], THREAD_004["targets"], THREAD_004["sparsity"], ACC)
    assert codes(warnings) == ["penalty_dominates", "chance_level", "subgradient_l1"]
    assert warnings[0]["message"].startswith("the penalties were 96% of the training loss in epoch 1 (63.13 of "
                                             "65.44), more than the loss of learning nothing (2.301)")
    assert warnings[1]["message"].startswith("test_acc = 0.1135 is at chance level: always predicting the most "
                                             "frequent class scores 0.1135")


def test_a_penalty_that_is_most_of_the_loss_dominates() -> None:
    rows = [{"epoch": 1, "train_task_loss": 1.0, "train_penalty_total": 3.0, "train_total_loss": 4.0},
            {"epoch": 2, "train_task_loss": 1.0, "train_penalty_total": 0.2, "train_total_loss": 1.2}]
    (warning,) = diagnose(rows, [], None)
    assert warning == {"code": "penalty_dominates", "message": "the penalties were 75% of the training loss in "
                       "epoch 1 (3 of 4): λ is likely too large for the task to be learned"}


def test_a_penalty_that_dominates_a_learned_tasks_tiny_loss_but_costs_less_than_learning_nothing_is_fine() -> None:
    rows = [{"epoch": 3, "train_task_loss": 0.002, "train_penalty_total": 0.0345, "train_total_loss": 0.0365}]
    assert diagnose(rows, [], None, ACC) == []


def test_a_sane_run_has_no_warning() -> None:
    final = {"train_task_loss": 0.2, "penalty.act.raw": 300.0, "penalty.act.weighted": 0.03,
             "train_penalty_total": 0.03, "train_total_loss": 0.23, "test_acc": 0.97}
    targets = [row("act", "act1", site="activations"), row("act", "act2", site="activations")]
    sparsity = {"activations": {"act1": {"units": 64, "dead_units": 3}, "act2": {"units": 32, "dead_units": 0}},
                "weights": []}
    assert diagnose([final], targets, sparsity, ACC, weight_decay=0.0) == []


def test_a_targeted_layer_with_every_unit_dead_is_named() -> None:
    targets = [row("act", "act1", site="activations")]
    sparsity = {"activations": {"act1": {"units": 64, "dead_units": 64}}}
    assert codes(diagnose([], targets, sparsity)) == ["dead_layer"]


def test_a_targeted_tensor_that_is_all_zeros_is_named() -> None:
    targets = [row("w", "fc1.weight", proximal=True)]
    assert codes(diagnose([], targets, {"weights": [weight("fc1.weight", 1.0)]})) == ["zeroed_tensor"]


@pytest.mark.parametrize(("weighted", "warned"), [(1e-6, True), (1e-3, False)])
def test_a_vanishing_penalty_share_is_negligible(weighted: float, warned: bool) -> None:
    final = {"train_task_loss": 0.5, "penalty.w.weighted": weighted}
    targets = [row("w", "fc1.weight", site="activations")]
    assert ("lambda_negligible" in codes(diagnose([final], targets, {}))) is warned


def test_lambda_zero_is_a_baseline_not_a_warning() -> None:
    final = {"train_task_loss": 0.5, "penalty.w.weighted": 0.0}
    assert diagnose([final], [row("w", "fc1.weight", lam=0.0)], {"weights": [weight("fc1.weight", 0.0)]}) == []


def test_proximal_l1_or_exact_zeros_silence_the_subgradient_warning() -> None:
    sparse = {"weights": [weight("fc1.weight", 0.4)]}
    assert diagnose([], [row("w", "fc1.weight")], sparse) == []
    assert diagnose([], [row("w", "fc1.weight", proximal=True)], {"weights": [weight("fc1.weight", 0.0)]}) == []


def test_an_l2_penalty_beside_weight_decay_is_double_l2() -> None:
    targets = [row("l2w", "fc1.weight", penalty="l2")]
    assert codes(diagnose([], targets, {}, weight_decay=0.01)) == ["double_l2"]
    assert diagnose([], targets, {}, weight_decay=0.0) == []
    assert diagnose([], targets, {}, weight_decay=0.01, grouped=True) == []  # groups.json says which decay


def test_regression_at_chance_compares_with_predicting_the_mean() -> None:
    r2 = Chance("test_r2", 0.0, True, "predicting the training mean")
    assert codes(diagnose([{"test_r2": 0.01}], [], None, r2)) == ["chance_level"]
    assert diagnose([{"test_r2": 0.9}], [], None, r2) == []


def test_a_run_of_thread_004s_recipe_ends_with_warnings_and_a_sane_run_with_none(make_cfg, tmp_path) -> None:
    """Through run(): the warnings land in summary.json (tiny data; the real recipe is an
    experiment preset, checked on MNIST by tests/cli/test_realdata.py)."""
    from regrun.jobs.run import run

    collapse = run(make_cfg("reg=l1_weights", "reg.targets.l1_weights.lambda=1.0", "reg.targets.l1_weights.site=params",
                            "optimizer.lr=1e-4", "model.hidden=[64,32]"), tmp_path / "collapse")
    assert {"penalty_dominates", "chance_level"} <= set(codes(collapse["warnings"]))
    sane = run(make_cfg("reg=l1_activations", "trainer.epochs=3"), tmp_path / "sane")
    assert sane["final"]["test_acc"] > 0.5 and sane["warnings"] == []
