"""Optimizers: torch's fused kernels by default, stepping as torch's default loop does, to
rounding: a vectorized kernel rounds a few operations in another order. How far apart they
drift in 50 steps depends on the CPU's vector width: 3 of 257 elements, 1.4e-7 relative, on
AVX2; 12 to 15 elements, up to 1.7e-6 relative, on AVX-512. The bound is 1e-5 relative,
far below any difference of algorithm (a wrong bias correction or decay is 1e-2 or more)."""

import pytest
import torch

from regrun.components.optimizers import build_optimizer, implementation
from regrun.errors import RegrunError

OPTIONS = {"sgd": {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3}, "adam": {"lr": 1e-2},
           "adamw": {"lr": 1e-2, "weight_decay": 0.1, "amsgrad": True}}


def trajectory(name: str, **choice: object) -> torch.Tensor:
    """A parameter after 50 steps on seeded random gradients."""
    param = torch.randn(257, generator=torch.Generator().manual_seed(0)).requires_grad_()
    optimizer = build_optimizer([param], {"name": name, **OPTIONS[name], **choice})
    gradients = torch.Generator().manual_seed(1)
    for _ in range(50):
        param.grad = torch.randn(257, generator=gradients)
        optimizer.step()
    return param.detach()


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_the_fused_default_steps_as_torchs_loop(name: str) -> None:
    default = build_optimizer([torch.zeros(2, requires_grad=True)], {"name": name, **OPTIONS[name]})
    assert implementation(default) == "fused"
    fused, loop = trajectory(name), trajectory(name, foreach=False)
    assert torch.allclose(fused, loop, rtol=1e-5, atol=0)


@pytest.mark.parametrize("choice, expected", [({"foreach": True}, "foreach"), ({"foreach": False}, "for-loop"),
                                              ({"fused": False}, "for-loop"), ({"fused": True}, "fused")])
def test_an_implementation_chosen_in_the_config_is_kept(choice: dict, expected: str) -> None:
    optimizer = build_optimizer([torch.zeros(2, requires_grad=True)], {"name": "adamw", **choice})
    assert implementation(optimizer) == expected


@pytest.mark.parametrize("param, options", [
    (torch.zeros(2, dtype=torch.complex64, requires_grad=True), {}),  # no fused kernel for complex numbers
    (torch.zeros(2, device="meta", requires_grad=True), {}),           # nor for the meta device
    (torch.zeros(2, requires_grad=True), {"differentiable": True}),    # nor for a differentiable step
])
def test_what_has_no_fused_kernel_steps_on_torchs_default(param: torch.Tensor, options: dict) -> None:
    optimizer = build_optimizer([param], {"name": "adam", **options})
    assert implementation(optimizer) == "for-loop" and type(optimizer) is torch.optim.Adam


def test_the_implementation_options_keep_their_schema() -> None:
    with pytest.raises(RegrunError, match="optimizer.foreach must be true or false"):
        build_optimizer([torch.zeros(2, requires_grad=True)], {"name": "adam", "foreach": "no"})


def test_a_checkpoint_puts_back_the_implementation_it_was_saved_with() -> None:
    old = torch.optim.AdamW([torch.zeros(2, requires_grad=True)], foreach=False)  # as regrun built it before fusing
    new = build_optimizer([torch.zeros(2, requires_grad=True)], {"name": "adamw"})
    new.load_state_dict(old.state_dict())
    assert implementation(new) == "for-loop"  # a resumed run steps on as it was saved


def test_an_optimizer_without_torchs_implementation_options_steps_its_own_way() -> None:
    class Plain(torch.optim.Optimizer):  # a plugin's optimizer: no foreach, no fused
        def __init__(self, params, lr: float = 0.1) -> None:
            super().__init__(params, {"lr": lr})

    assert implementation(Plain([torch.zeros(2, requires_grad=True)])) == "its own"
