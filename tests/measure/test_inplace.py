"""Activation penalties see a module's output as it left the module, whatever in-place
operation follows it in the forward: the output is copied in the hook where a probe before
training found it overwritten (and only there), and an overwrite the probe missed is refused
in one line. Solo and fused training go through the same loop."""

import copy
import csv
import logging
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from regrun.components.datasets import Data, Split
from regrun.components.tasks import CLASSIFICATION
from regrun.errors import RegrunError
from regrun.jobs.fused_group import prepare_member, train_group
from regrun.jobs.run import run
from regrun.layout import penalty_column
from regrun.measure.capture import ActivationCapture, overwritten_in_place
from regrun.training.fused import FusedModel
from regrun.training.loop import Member, Outcome, TrainState, fit
from regrun.training.settings import TrainerSettings
from regrun.training.step import SoloStep
from regrun.training.targets import resolve_target

WIDTH, SAMPLES = 6, 16


class Activated(nn.Module):
    """fc1 → act1 (an activation module, in place or not) → head."""

    def __init__(self, act: type[nn.Module], inplace: bool):
        super().__init__()
        self.fc1, self.act1, self.head = nn.Linear(WIDTH, 8), act(inplace=inplace), nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.act1(self.fc1(x)))


class ReluInForward(nn.Module):
    """fc1 → x.relu_() or x.relu() written in the forward → head."""

    def __init__(self, inplace: bool):
        super().__init__()
        self.fc1, self.head, self.inplace = nn.Linear(WIDTH, 8), nn.Linear(8, 3), inplace

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc1(x)
        return self.head(h.relu_() if self.inplace else h.relu())


class Residual(nn.Module):
    """out = fc2(relu(fc1(x))); out += x (torchvision's BasicBlock) or out = out + x; head."""

    def __init__(self, inplace: bool):
        super().__init__()
        self.fc1, self.fc2, self.head, self.inplace = nn.Linear(WIDTH, WIDTH), nn.Linear(WIDTH, WIDTH), \
            nn.Linear(WIDTH, 3), inplace

    def forward(self, x: Tensor) -> Tensor:
        out = self.fc2(self.fc1(x).relu())
        if self.inplace:
            out += x
        else:
            out = out + x
        return self.head(out)


# name → (make the net, in place or not; the captured module; where the overwrite happens)
NETS = {
    "ReLU(True)": (lambda inplace: Activated(nn.ReLU, inplace), "fc1", "act1 (ReLU)"),
    "LeakyReLU(inplace=True)": (lambda inplace: Activated(nn.LeakyReLU, inplace), "fc1", "act1 (LeakyReLU)"),
    "x.relu_()": (ReluInForward, "fc1", "the model's own forward (ReluInForward)"),
    "out += identity": (Residual, "fc2", "the model's own forward (Residual)"),
}


def make(net: str, inplace: bool) -> nn.Module:
    torch.manual_seed(0)  # the same weights in place or not
    return NETS[net][0](inplace)


def data() -> Data:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(SAMPLES, WIDTH, generator=g), torch.randint(0, 3, (SAMPLES,), generator=g)
    return Data("toy", Split(x, y), Split(x, y))


def hand_l1(model: nn.Module, module: str, x: Tensor) -> float:
    """Σ|h| per sample, averaged over the batch, of the captured Linear's output written by hand."""
    if module == "fc1":
        h = x @ model.fc1.weight.T + model.fc1.bias
    else:  # fc2 takes relu(fc1(x))
        h = (x @ model.fc1.weight.T + model.fc1.bias).clamp(min=0) @ model.fc2.weight.T + model.fc2.bias
    return h.abs().sum(1).mean().item()


class Quiet:
    """A reporter that says nothing."""

    def start_epoch(self, epoch: int, steps: int) -> None: ...

    def step(self, done: int, figures) -> None: ...

    def end_epoch(self, label: str, row) -> None: ...


def train(models: list[nn.Module], module: str, fused: bool, steps: int = 1) -> list[float]:
    """One epoch of `steps` steps (one: the whole set) per model through the loop; each one's
    raw L1 of `module`'s output, as metrics.csv reports it."""
    rows: list[dict] = []
    members = []
    for model in models:
        target = resolve_target(model, "l1", {"site": "activations", "layers": [module], "penalty": "l1",
                                               "lambda": 1e-2})
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

        def done(outcome: Outcome) -> None:
            assert outcome.status == "completed", outcome

        members.append(Member(model, optimizer, [target], TrainState(torch.Generator().manual_seed(0)),
                              rows.append, lambda: None, done))
    stepper = FusedModel(members) if fused else SoloStep(models[0], members[0].optimizer, members[0].targets)
    fit(members, stepper, CLASSIFICATION, data(), TrainerSettings(epochs=1, batch_size=SAMPLES // steps), [], Quiet())
    return [row[penalty_column("l1", "raw")] for row in rows]


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("fused", [False, True], ids=["solo", "fused"])
def test_the_penalty_is_of_the_output_as_it_left_the_module(net: str, fused: bool) -> None:
    module = NETS[net][1]
    expected = hand_l1(make(net, False), module, data().train.x)
    count = 2 if fused else 1
    in_place = train([make(net, True) for _ in range(count)], module, fused)
    out_of_place = train([make(net, False) for _ in range(count)], module, fused)
    assert in_place == pytest.approx([expected] * count, rel=1e-6)
    assert out_of_place == pytest.approx([expected] * count, rel=1e-6)


@pytest.mark.parametrize("net", NETS)
def test_the_probe_names_the_overwritten_output_and_where_it_is_overwritten(net: str) -> None:
    _, module, where = NETS[net]
    x = data().train.x
    assert overwritten_in_place(make(net, True), x, [module]) == {module: where}
    assert overwritten_in_place(make(net, False), x, [module]) == {}


def test_without_an_in_place_op_nothing_is_copied(caplog: pytest.LogCaptureFixture) -> None:
    """The kept tensor is the module's output itself, and training says nothing of copies."""
    model = make("ReLU(True)", False)
    outputs: list[Tensor] = []
    model.fc1.register_forward_hook(lambda m, i, out: outputs.append(out))
    with ActivationCapture(model, ["fc1"], overwritten_in_place(model, data().train.x, ["fc1"])) as capture:
        model(data().train.x)
        taken = capture.take()
    assert not capture.copied
    assert taken["fc1"][0] is outputs[-1]
    with caplog.at_level(logging.INFO):
        train([make("ReLU(True)", False)], "fc1", fused=False)
    assert "in place" not in caplog.text
    with caplog.at_level(logging.INFO):
        train([make("ReLU(True)", True)], "fc1", fused=False)
    assert "overwritten in place later in the forward: fc1 by act1 (ReLU)" in caplog.text


def test_the_probe_leaves_no_trace() -> None:
    """Training mode as a step runs it, yet BatchNorm's statistics, the RNG and the mode are as before."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(WIDTH, 8), nn.BatchNorm1d(8), nn.ReLU(inplace=True), nn.Dropout(0.5))
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    assert overwritten_in_place(model, data().train.x, ["1"]) == {"1": "2 (ReLU)"}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng) and not model.training


def test_dropout_in_place_is_found_in_training_mode() -> None:
    """nn.Dropout(inplace=True) writes in place only in training mode, where the penalty is taken."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(WIDTH, 8), nn.Dropout(0.5, inplace=True), nn.Linear(8, 3))
    assert overwritten_in_place(model, data().train.x, ["0"]) == {"0": "1 (Dropout)"}


class LateInPlace(nn.Module):
    """Goes in place from its second forward on: the probe sees its first (a fused group's
    template copy, made before it, its first step)."""

    def __init__(self):
        super().__init__()
        self.fc1, self.head, self.calls = nn.Linear(WIDTH, 8), nn.Linear(8, 3), 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        h = self.fc1(x)
        return self.head(h.relu_() if self.calls > 1 else h.relu())


@pytest.mark.parametrize("fused", [False, True], ids=["solo", "fused"])
def test_an_overwrite_the_probe_missed_is_refused_in_one_line(fused: bool) -> None:
    with pytest.raises(RegrunError) as err:
        train([LateInPlace() for _ in range(2 if fused else 1)], "fc1", fused, steps=2)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("activation fc1: its output was overwritten in place") and "inplace=False" in message


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("fused", [False, True], ids=["solo", "fused"])
def test_a_run_of_the_in_place_example_reports_the_penalty_of_its_out_of_place_twin(
        make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        fused: bool) -> None:
    """examples/inplace_mlp.py as its docstring runs it, with inplace true and false."""
    monkeypatch.setattr(sys, "path", [str(EXAMPLES), *sys.path])
    figures = {}
    for inplace in ("true", "false"):
        caplog.clear()
        out = tmp_path / inplace
        cfg = make_cfg("model=custom", "model.factory=inplace_mlp:mlp", f"+model.inplace={inplace}",
                       "+model.hidden=[16,8]", "reg=l1_activations", "reg.targets.l1_activations.layers=[fc1]")
        if fused:  # a group of two λ through the same loop
            other = copy.deepcopy(cfg)
            other["reg"]["targets"]["l1_activations"]["lambda"] = 1e-3
            cache: dict = {}
            outs = [out, tmp_path / f"{inplace}-2"]
            with caplog.at_level(logging.INFO):
                train_group([prepare_member(c, o, cache) for c, o in zip([cfg, other], outs)])
            for o in outs:  # each member's own log says it
                assert ("fc1 by act1 (ReLU)" in (o / "regrun.log").read_text()) == (inplace == "true")
        else:
            with caplog.at_level(logging.INFO):
                run(cfg, out)
        with open(out / "metrics.csv") as f:
            row = list(csv.DictReader(f))[-1]
        figures[inplace] = float(row[penalty_column("l1_activations", "raw")])
        assert ("fc1 by act1 (ReLU)" in caplog.text) == (inplace == "true")
    assert figures["true"] == pytest.approx(figures["false"], rel=1e-6)
