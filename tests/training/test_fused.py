"""Fused training: members of a group end with the figures of the same runs alone.

Only the order of floating-point sums may differ between a member and its run alone (a
batched matmul or BatchNorm under vmap sums in another order), so figures are compared
within TOLERANCE; a zero fraction may differ by an element whose value sits at 0.
"""

import csv
import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from regrun.components.optimizers import implementation
from regrun.jobs.fused_group import prepare_member, train_group
from regrun.jobs.run import NotFusable, build, run
from regrun.rundir.lock import FolderInUse
from regrun.rundir.resume import prepare as prepare_resume
from regrun.training.fused import FusedModel, not_fusable
from regrun.training.loop import Member
from regrun.training.memory import chunk_size

# Largest differences seen between a member and its run alone on these tiny runs: 1e-4
# relative in a loss (test loss of an MLP with BatchNorm after 2 epochs; usually under 1e-5),
# and, in counts over the 160 test samples, one sample classified otherwise (test_acc
# 6.25e-3 apart) and 3 of the 2560 outputs of a ReLU after BatchNorm on the other side of 0.
# With BatchNorm after a Linear, the Linear's bias has a true gradient of 0: what it gets
# is rounding noise, which Adam scales up to full steps: with Adam such a member drifted to
# 3e-4 relative in test loss after 20 steps, so that case runs with SGD here.
TOLERANCE = {"rel_tol": 2e-4, "abs_tol": 1e-5}
FRACTION_TOLERANCE = {"rel_tol": 0.0, "abs_tol": 1e-2}  # counts over the tiny test set: test_acc, sparsity.*
TIMING = "epoch_time_s"
SEEDS_AND_LAMBDAS = [(0, 0.0), (1, 1e-3), (0, 1e-2)]


def metrics(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "metrics.csv") as f:
        return [{k: float(v) for k, v in row.items() if k != TIMING} for row in csv.DictReader(f)]


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def assert_same_figures(fused: Path, alone: Path) -> None:
    ours, theirs = metrics(fused), metrics(alone)
    assert [row.keys() for row in ours] == [row.keys() for row in theirs]
    for mine, reference in zip(ours, theirs):
        for key, value in reference.items():
            tolerance = FRACTION_TOLERANCE if key == "test_acc" or key.startswith("sparsity.") else TOLERANCE
            assert math.isclose(mine[key], value, **tolerance), (fused, mine["epoch"], key, mine[key], value)


def fuse(cfgs: list[dict], outs: list[Path], stop: Callable[[], bool] = lambda: False) -> None:
    cache: dict = {}
    train_group([prepare_member(cfg, out, cache) for cfg, out in zip(cfgs, outs)], stop)


def grid(make_cfg: Callable[..., dict], target: str, *overrides: str) -> list[dict]:
    return [make_cfg(*overrides, "trainer.epochs=2", f"seed={seed}", f"reg.targets.{target}.lambda={lam}")
            for seed, lam in SEEDS_AND_LAMBDAS]


CASES = {
    "sgd, proximal L1 on weights": ("l1_weights", "optimizer=sgd", "reg=l1_weights",
                                    "reg.targets.l1_weights.proximal=true"),
    "adam with weight decay, L1 on activations": ("l1_activations", "optimizer=adam", "optimizer.weight_decay=1e-3",
                                                  "reg=l1_activations"),
    "adamw with weight decay, L2 on weights": ("l2_weights", "optimizer=adamw", "optimizer.weight_decay=1e-2",
                                               "reg=[l1_activations,l2_weights]"),
    "cnn with batchnorm, L1 on activations": ("l1_activations", "model=cnn", "model.channels=[4,8]", "model.hidden=[16]",
                                              "reg=l1_activations"),
    "mlp with batchnorm, sgd, group lasso": ("group_lasso", "model.norm=batch", "optimizer=sgd", "reg=group_lasso"),
    "sgd, proximal group lasso on rows": ("group_lasso", "optimizer=sgd", "reg=group_lasso",
                                          "reg.targets.group_lasso.proximal=true"),
    "adam on torch's foreach implementation": ("l1_activations", "optimizer=adam", "+optimizer.foreach=true",
                                               "reg=l1_activations"),
    "one norm over a target's tensors, hoyer over its outputs together": (
        "l2_weights", "optimizer=sgd", "reg=[l1_activations,l2_weights]", "reg.targets.l2_weights.penalty=l2_norm",
        "reg.targets.l2_weights.site=params", "reg.targets.l2_weights.over=target",
        "reg.targets.l1_activations.penalty=hoyer", "reg.targets.l1_activations.over=target",
        "reg.targets.l1_activations.layers=[act*]"),
    "adamw, adaptive proximal L1 warmed up then decayed": (
        "l1_weights", "optimizer=adamw", "reg=l1_weights", "reg.targets.l1_weights.proximal=adaptive",
        "reg.targets.l1_weights.warmup_steps=5", "reg.targets.l1_weights.decay=cosine"),
}


@pytest.mark.parametrize("case", CASES)
def test_each_member_ends_with_the_figures_of_its_run_alone(case: str, make_cfg, tmp_path: Path) -> None:
    target, *overrides = CASES[case]
    cfgs = grid(make_cfg, target, "model.hidden=[32,16]", *overrides)
    fuse(cfgs, [tmp_path / f"fused{i}" for i in range(len(cfgs))])
    for i, cfg in enumerate(cfgs):
        run(cfg, tmp_path / f"alone{i}")
        assert summary(tmp_path / f"fused{i}")["status"] == "completed"
        assert_same_figures(tmp_path / f"fused{i}", tmp_path / f"alone{i}")
        for name in ("config.json", "targets.json", "checkpoint.pt", "model.pt"):
            assert (tmp_path / f"fused{i}" / name).exists()
        assert json.loads((tmp_path / f"fused{i}" / "targets.json").read_text()) == \
               json.loads((tmp_path / f"alone{i}" / "targets.json").read_text())


@pytest.mark.parametrize("choice, expected", [([], "fused"), (["+optimizer.foreach=true"], "foreach"),
                                              (["+optimizer.fused=false"], "for-loop")])
def test_a_group_steps_on_its_members_optimizer_implementation(choice: list[str], expected: str, make_cfg) -> None:
    setups = [build(make_cfg(*choice, f"seed={seed}")) for seed in (0, 1)]
    members = [Member(s.model, s.optimizer, s.targets, None, None, None, None) for s in setups]
    assert implementation(setups[0].optimizer) == implementation(FusedModel(members).optimizer) == expected


def test_a_diverging_member_ends_as_alone_and_the_others_finish(make_cfg, tmp_path: Path) -> None:
    # λ = 1e4 on Σw² with SGD lr 0.05 multiplies the weights by about −999 a step: inf within the first epoch.
    cfgs = [make_cfg("optimizer=sgd", "reg=l2_weights", "trainer.epochs=2", f"reg.targets.l2_weights.lambda={lam}")
            for lam in (1e-4, 1e4, 1e-3)]
    fuse(cfgs, [tmp_path / f"fused{i}" for i in range(3)])
    for i, cfg in enumerate(cfgs):
        run(cfg, tmp_path / f"alone{i}")
    diverged, alone = summary(tmp_path / "fused1"), summary(tmp_path / "alone1")
    assert diverged["status"] == alone["status"] == "diverged"
    assert diverged["error"] == alone["error"]  # the same term, value and step
    assert not (tmp_path / "fused1" / "checkpoint.pt").exists()
    for i in (0, 2):
        assert summary(tmp_path / f"fused{i}")["status"] == "completed"
        assert_same_figures(tmp_path / f"fused{i}", tmp_path / f"alone{i}")


def test_a_stop_checkpoints_every_member_and_each_resumes_alone_to_its_solo_figures(make_cfg, tmp_path: Path) -> None:
    cfgs = grid(make_cfg, "l1_activations", "reg=l1_activations", "optimizer=adam")
    calls = iter(range(1000))
    fuse(cfgs, [tmp_path / f"fused{i}" for i in range(3)], stop=lambda: next(calls) >= 16)  # in epoch 2 (epoch 1 polls 14 times: 10 steps, 3 evaluations, its end)
    saved = [torch.load(tmp_path / f"fused{i}" / "checkpoint.pt", weights_only=True) for i in range(3)]
    batches = saved[0]["partial"]["batches"]
    assert 0 < batches < 10 and all(s["epoch"] == 1 and s["partial"]["batches"] == batches for s in saved)
    for i in range(3):
        stopped = summary(tmp_path / f"fused{i}")
        assert stopped["status"] == "interrupted"
        assert f"stopped at step {10 + batches} (epoch 2, batch {batches}/10)" in stopped["error"]
    resume_cfg, checkpoint = prepare_resume(tmp_path / "fused1", [])
    run(resume_cfg, tmp_path / "fused1", checkpoint, resume=True)
    run(cfgs[1], tmp_path / "alone1")
    assert summary(tmp_path / "fused1")["status"] == "completed"
    assert_same_figures(tmp_path / "fused1", tmp_path / "alone1")


def test_a_stopped_group_continues_as_a_group_to_the_figures_of_an_uninterrupted_one(make_cfg, tmp_path: Path) -> None:
    cfgs = grid(make_cfg, "l1_weights", "reg=l1_weights", "optimizer=adamw")
    fuse(cfgs, [tmp_path / f"whole{i}" for i in range(3)])
    outs = [tmp_path / f"stopped{i}" for i in range(3)]
    calls = iter(range(1000))
    fuse(cfgs, outs, stop=lambda: next(calls) >= 16)  # in epoch 2 (epoch 1 polls 14 times: 10 steps, 3 evaluations, its end)
    cache: dict = {}
    group = [prepare_member(cfg, out, cache) for cfg, out in zip(cfgs, outs)]
    assert {p.state.position for p in group} == {(1, group[0].state.position[1])} and group[0].state.position[1] > 0
    train_group(group)
    for i in range(3):
        assert summary(outs[i])["status"] == "completed"
        ours, theirs = metrics(outs[i]), metrics(tmp_path / f"whole{i}")
        assert ours == theirs  # the same group's arithmetic, continued: equal to the last bit


def test_members_standing_at_other_steps_continue_in_groups_of_their_own(make_cfg, tmp_path: Path) -> None:
    cfgs = grid(make_cfg, "l1_activations", "reg=l1_activations")
    outs = [tmp_path / f"m{i}" for i in range(3)]
    calls = iter(range(1000))
    fuse(cfgs[:2], outs[:2], stop=lambda: next(calls) >= 4)  # epoch 1, batch 5
    calls = iter(range(1000))
    fuse(cfgs[2:], outs[2:], stop=lambda: next(calls) >= 13)  # epoch 2
    fuse(cfgs, outs)
    for i in range(3):
        run(cfgs[i], tmp_path / f"alone{i}")
        assert summary(outs[i])["status"] == "completed"
        assert_same_figures(outs[i], tmp_path / f"alone{i}")


def test_runs_that_draw_random_numbers_or_use_another_optimizer_are_not_fused(make_cfg, tmp_path: Path) -> None:
    with_dropout = build(make_cfg("model.dropout=0.1"))
    assert "dropout" in not_fusable(with_dropout.model, with_dropout.optimizer)
    plain = build(make_cfg())
    rmsprop = torch.optim.RMSprop(plain.model.parameters())
    assert "RMSprop" in not_fusable(plain.model, rmsprop)
    assert not_fusable(plain.model, plain.optimizer) is None
    with pytest.raises(NotFusable):
        prepare_member(make_cfg("model.dropout=0.1"), tmp_path / "run", {})
    assert not (tmp_path / "run" / "config.json").exists()  # nothing written: the job can still run alone there


def test_a_group_is_cut_to_max_models_and_to_half_the_free_memory() -> None:
    assert chunk_size(per_member=100, available=None, max_models=None) > 10**6
    assert chunk_size(per_member=100, available=None, max_models=4) == 4
    assert chunk_size(per_member=100, available=1000, max_models=None) == 5
    assert chunk_size(per_member=100, available=1000, max_models=3) == 3
    assert chunk_size(per_member=10**6, available=1000, max_models=None) == 1


def held_by_someone(folder: Path) -> bool:
    """Whether another process sees `folder`'s lock taken (this process's own is invisible to holder())."""
    code = f"from pathlib import Path; from regrun.rundir.lock import holder; print(holder(Path({str(folder)!r})))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() != "None"


def test_each_member_holds_its_folder_from_prepare_until_its_group_ended(make_cfg, tmp_path: Path) -> None:
    cfgs, outs = grid(make_cfg, "l1_weights", "reg=l1_weights")[:2], [tmp_path / "a", tmp_path / "b"]
    cache: dict = {}
    prepared = [prepare_member(cfg, out, cache) for cfg, out in zip(cfgs, outs)]
    assert all(held_by_someone(out) for out in outs)
    train_group(prepared)
    assert not any(held_by_someone(out) for out in outs)
    assert all(summary(out)["status"] == "completed" for out in outs)


def test_a_member_whose_folder_another_process_writes_is_refused_and_writes_nothing(make_cfg, tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    code = (f"import time; from pathlib import Path; from regrun.rundir.lock import one_writer\n"
            f"with one_writer(Path({str(out)!r})):\n    print('held', flush=True); time.sleep(60)")
    other = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        before = sorted(p.name for p in out.iterdir())
        with pytest.raises(FolderInUse):
            prepare_member(grid(make_cfg, "l1_weights", "reg=l1_weights")[0], out, {})
        assert sorted(p.name for p in out.iterdir()) == before
    finally:
        other.kill()
        other.wait()


def test_a_member_that_fails_once_its_files_are_written_says_so_in_its_summary(make_cfg, tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("tracker exploded")

    monkeypatch.setattr("regrun.jobs.run.build_loggers", broken)
    with pytest.raises(RuntimeError, match="tracker exploded"):
        prepare_member(grid(make_cfg, "l1_weights", "reg=l1_weights")[0], tmp_path / "run", {})
    assert summary(tmp_path / "run") | {"config": None} == {"status": "failed", "error": "tracker exploded", "config": None}
