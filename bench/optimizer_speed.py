"""What one optimizer step costs on each of torch's implementations, alone and stacked.

The parameters are the default MLP's (784-256-128-10, 235k of them), once as one model
and once stacked 8 deep as a fused group holds them (`--members`); the gradients are
random and fixed. Each implementation steps them `--steps` times after a warm-up:

    for-loop   torch's default on CPU: about ten tensor operations per parameter
    foreach    batched tensor operations over all parameters (torch's default on CUDA)
    fused      one kernel per step (regrun's default where torch has one)

Variants alternate order across `--repeats`; the table gives the median milliseconds per
step and each one's multiple of the fused kernel's.

    python bench/optimizer_speed.py --repeats 3
    python bench/optimizer_speed.py --optimizers sgd adamw --members 1 8 24
"""

import argparse
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

SHAPES = [(256, 784), (256,), (128, 256), (128,), (10, 128), (10,)]  # the default MLP's parameters
OPTIONS = {"sgd": (torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}), "adam": (torch.optim.Adam, {"lr": 1e-3}),
           "adamw": (torch.optim.AdamW, {"lr": 1e-3})}
IMPLEMENTATIONS = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def parse_args() -> argparse.Namespace:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--optimizers", nargs="+", default=["adamw"], choices=list(OPTIONS))
    parser.add_argument("--members", nargs="+", type=int, default=[1, 8], help="models stacked (default %(default)s)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args()


def step_ms(name: str, members: int, implementation: str, steps: int) -> float:
    """Milliseconds per step of one optimizer over `members` stacked copies of the parameters."""
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn((members, *shape), generator=generator).requires_grad_() for shape in SHAPES]
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator)
    cls, options = OPTIONS[name]
    optimizer = cls(params, **options, **IMPLEMENTATIONS[implementation])
    for _ in range(10):  # warm-up: state allocated, caches warm
        optimizer.step()
    started = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return (time.perf_counter() - started) / steps * 1e3


def main() -> None:
    """Time every (optimizer, members, implementation), print the table."""
    args = parse_args()
    console = Console()
    table = Table(title=f"ms per optimizer step, median of {args.repeats}, {torch.get_num_threads()} threads",
                  title_justify="left")
    for column in ("optimizer", "members", "parameters", *IMPLEMENTATIONS, "for-loop / fused"):
        table.add_column(column, justify="left" if column == "optimizer" else "right")
    for name in args.optimizers:
        for members in args.members:
            times: dict[str, list[float]] = {impl: [] for impl in IMPLEMENTATIONS}
            for repeat in range(args.repeats):
                order = list(IMPLEMENTATIONS) if repeat % 2 == 0 else list(IMPLEMENTATIONS)[::-1]
                for impl in order:
                    times[impl].append(step_ms(name, members, impl, args.steps))
            medians = {impl: statistics.median(t) for impl, t in times.items()}
            count = members * sum(torch.Size(s).numel() for s in SHAPES)
            table.add_row(name, str(members), f"{count:,}", *(f"{m:.3f}" for m in medians.values()),
                          f"{medians['for-loop'] / medians['fused']:.1f}×")
    console.print(table)


if __name__ == "__main__":
    main()
