"""What the in-place check costs a model without in-place operations: seconds per training
epoch with regrun's `ActivationCapture` (each kept output's version counter read in its hook
and compared when the penalty takes it) against the capture without it (the kept tensor
alone, as before the check), on the workload of epoch_speed.py: real MNIST on the CPU, MLP
784-64-32-10 (out-of-place ReLUs), batch 64, AdamW, L1 on act1 and act2 at λ = 1e-4,
through `regrun.training.loop.train_epoch`, the loop `fit` runs.

Each variant trains its own copy of the same model on the same batches (same seed, same
shuffle), so their mean task losses must agree: the script prints both. In every repeat
both run one epoch, in alternating order (checked first in odd repeats, unchecked first in
even ones), so a drift in the speed of a shared machine hits both alike; the figure is the
ratio checked / unchecked per repeat and their median. On a shared machine an epoch can
stall (seen: 5 s epochs taking 12 s), so the script also gives the bound that does not
depend on the machine's load: the time of the check's work per step (a version read in
each captured module's hook and a comparison when the penalty takes it, timed in a tight
loop) as a fraction of the median step time. The probe that `fit` runs once
before training (one forward of a batch) is timed on its own line.

    .venv/bin/python bench/capture_cost.py --data-root ../shared/data --repeats 5 --threads 1

Results go to bench/results/capture_cost.json (git-ignored) unless --out says otherwise.
"""

import argparse
import json
import statistics
import sys
import timeit
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Benchmark this checkout's regrun, even where another copy is installed in the venv.
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import torch  # noqa: E402
from epoch_speed import (  # noqa: E402
    BATCH_SIZE,
    SEED,
    WARMUP_SEED,
    WARMUP_STEPS,
    at_least_1,
    check_data_root,
    from_repo,
    regrun_epoch,
    regrun_parts,
    timed,
)
from torch import Tensor  # noqa: E402

from regrun.components.datasets import Split, load_data  # noqa: E402
from regrun.measure.capture import ActivationCapture, overwritten_in_place, storage_version  # noqa: E402


class Unchecked(ActivationCapture):
    """The capture without the in-place check: no version read in the hook, none compared
    when the outputs are taken."""

    def _keep(self, name: str, output: Tensor) -> None:
        if torch.is_grad_enabled():
            self._store[name].append((output, 0))

    def take(self) -> dict[str, list[Tensor]]:
        """The outputs captured since the last call, forgotten."""
        taken = {name: [out for out, _ in kept] for name, kept in self._store.items()}
        for kept in self._store.values():
            kept.clear()
        return taken


def check_seconds(outputs: int, number: int = 100_000) -> float:
    """Seconds of the check's work in one step: per captured output, its version read in the
    hook and read again (and compared) when the penalty takes it."""
    out = torch.randn(BATCH_SIZE, 64, requires_grad=True) * 2  # a non-leaf, as a module's output
    per_read = timeit.timeit(lambda: storage_version(out), number=number) / number
    return outputs * (2 * per_read)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data-root", default="../shared/data", help="folder holding MNIST/raw/ (default %(default)s)")
    parser.add_argument("--repeats", type=at_least_1, default=3, help="epochs per variant (default %(default)s)")
    parser.add_argument("--threads", type=at_least_1, default=None,
                        help="torch.set_num_threads(N) before timing (default: torch's own choice)")
    parser.add_argument("--out", default="bench/results/capture_cost.json", help="results JSON (default %(default)s)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Time both captures' epochs alternately; print and save the ratios."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    root = from_repo(args.data_root)
    check_data_root(root)
    data = load_data({"name": "mnist", "root": str(root), "download": False}, torch.device("cpu"))
    variants = {}
    for name, kind in (("checked", ActivationCapture), ("unchecked", Unchecked)):
        model, targets, optimizer = regrun_parts(data)  # the same weights for both
        captured = sorted({m for t in targets if t.on_activations for m in t.modules})
        variants[name] = (model, targets, optimizer, kind(model, captured), torch.Generator().manual_seed(SEED))
    probe_s = timed(lambda: overwritten_in_place(variants["checked"][0], data.train.x[:BATCH_SIZE], captured))[0]
    n = WARMUP_STEPS * BATCH_SIZE
    warmup = Split(data.train.x[:n], data.train.y[:n])
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    losses: dict[str, float] = {}
    with ExitStack() as hooks:  # fit enters its capture once, outside its epochs
        for model, targets, optimizer, capture, _ in variants.values():
            hooks.enter_context(capture)
            regrun_epoch(model, targets, optimizer, warmup, capture, torch.Generator().manual_seed(WARMUP_SEED))
        for repeat in range(args.repeats):
            order = list(variants) if repeat % 2 == 0 else list(reversed(variants))
            for name in order:
                s, means = timed(lambda v=variants[name]: regrun_epoch(*v[:3], data.train, *v[3:]))
                seconds[name].append(s)
                losses[name] = means[0]
            print(f"repeat {repeat + 1} ({' then '.join(order)}): checked {seconds['checked'][-1]:.2f} s, "
                  f"unchecked {seconds['unchecked'][-1]:.2f} s, "
                  f"ratio {seconds['checked'][-1] / seconds['unchecked'][-1]:.3f}")
    ratios = [c / u for c, u in zip(seconds["checked"], seconds["unchecked"])]
    print(f"checked / unchecked epoch time: median {statistics.median(ratios):.3f} "
          f"(per repeat {', '.join(f'{r:.3f}' for r in ratios)}); torch threads {torch.get_num_threads()}")
    print(f"same work: mean task loss of the last epoch, checked {losses['checked']:.6f}, "
          f"unchecked {losses['unchecked']:.6f}")
    print(f"probe before training (once per fit): {1000 * probe_s:.1f} ms")
    check_s = check_seconds(len(captured))
    step_s = statistics.median(seconds["unchecked"]) / -(-len(data.train) // BATCH_SIZE)
    print(f"the check's own work: {1e6 * check_s:.2f} µs a step ({len(captured)} captured outputs), "
          f"{100 * check_s / step_s:.3f} % of a {1000 * step_s:.2f} ms step")
    out = from_repo(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"seconds": seconds, "ratios": ratios, "median_ratio": statistics.median(ratios),
                               "task_loss": losses, "probe_s": probe_s,
                               "check_s_per_step": check_s, "step_s": step_s, "threads": torch.get_num_threads()},
                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
