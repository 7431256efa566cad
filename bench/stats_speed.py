"""What the test-set statistics cost: a CNN epoch evaluated on the whole test set against
the same epoch evaluated on 200 test samples.

Both variants train the default CNN (conf/model/cnn.yaml) with AdamW (conf/optimizer/adamw.yaml)
for one epoch on the first 30k training images of real MNIST, through regrun's own loop
(`train_epoch`), then run regrun's `evaluate` (test loss, accuracy, and every statistic of
every layer: zero fraction, dead units, L1 and Hoyer per sample, weight statistics):

full    on the whole test split (10k images)
small   on its first 200 images (what `dataset.test_limit=200` keeps)

The figure is the ratio of their epoch times (training + evaluation), in process, so that
start-up is left out. Each repeat times both from the same initial weights, alternating
which goes first, and the verdict uses the median of the per-repeat ratios: on a shared
machine a ratio within one repeat is steadier than either time. The evaluation is also
timed alone, against the same forward passes with no statistics.

Target: full / small ≤ 1.35 (the forward passes alone account for about 1.3).

    python bench/stats_speed.py --data-root ../shared/data --repeats 3
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from regrun.cli import conf_dir  # noqa: E402
from regrun.components.datasets import Split, chunks, load_data  # noqa: E402
from regrun.components.models import build_model  # noqa: E402
from regrun.components.optimizers import build_optimizer  # noqa: E402
from regrun.training.capture import ActivationCapture  # noqa: E402
from regrun.training.trainer import EpochProgress, evaluate, train_epoch  # noqa: E402

TRAIN_SAMPLES = 30_000
SMALL_TEST = 200
THRESHOLDS = [1e-3, 1e-4, 1e-2]


class Silent:
    """A reporter that says nothing."""

    def start_epoch(self, epoch: int, steps: int) -> None:
        """Nothing to show."""

    def step(self, done: int, figures: dict) -> None:
        """Nothing to show."""

    def end_epoch(self, row: dict) -> None:
        """Nothing to show."""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--repeats", type=int, default=3)
    return p.parse_args()


def config(root: str) -> dict:
    """The real configs: CNN, AdamW, MNIST limited to 30k training samples, on CPU."""
    overrides = ["model=cnn", "optimizer=adamw", f"dataset.root={root}", "dataset.download=false",
                 f"dataset.train_limit={TRAIN_SAMPLES}", "trainer.device=cpu"]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return OmegaConf.to_container(compose(config_name="config", overrides=overrides), resolve=True)


def epoch(cfg: dict, data, test: Split, state: dict) -> tuple[float, float]:
    """One training epoch from `state`, then evaluate on `test`: (epoch seconds, evaluation seconds)."""
    model = build_model(cfg["model"], (1, 28, 28), 10)
    model.load_state_dict(state)
    optimizer = build_optimizer(model, cfg["optimizer"])
    started = time.perf_counter()
    with ActivationCapture(model, []) as capture:
        progress = EpochProgress(0, torch.zeros(1, dtype=torch.float64))
        train_epoch(model, [], optimizer, capture, data.train, cfg["trainer"]["batch_size"],
                    torch.Generator().manual_seed(0), 50, Silent(), progress)
    evaluated = time.perf_counter()
    evaluate(model, test, cfg["trainer"]["eval_batch_size"], THRESHOLDS)
    done = time.perf_counter()
    return done - started, done - evaluated


def forward_only(model: torch.nn.Module, test: Split, batch_size: int) -> float:
    """Seconds of the evaluation's forward passes and loss alone, no statistics."""
    started = time.perf_counter()
    model.eval()
    with torch.no_grad():
        for x, y in chunks(test, batch_size):
            F.cross_entropy(model(x), y, reduction="sum").item()
    return time.perf_counter() - started


def main() -> None:
    args = parse_args()
    cfg = config(args.data_root)
    data = load_data(cfg["dataset"], torch.device("cpu"))
    small = Split(data.test.x[:SMALL_TEST], data.test.y[:SMALL_TEST])
    torch.manual_seed(0)
    state = build_model(cfg["model"], (1, 28, 28), 10).state_dict()
    print(f"CNN, {len(data.train)} training samples, test {len(data.test)} vs {SMALL_TEST}, "
          f"{torch.get_num_threads()} threads")
    ratios, evals, forwards = [], [], []
    for repeat in range(args.repeats):
        order = ("full", "small") if repeat % 2 == 0 else ("small", "full")
        times = {name: epoch(cfg, data, data.test if name == "full" else small, state) for name in order}
        model = build_model(cfg["model"], (1, 28, 28), 10)
        forwards.append(forward_only(model, data.test, cfg["trainer"]["eval_batch_size"]))
        ratios.append(times["full"][0] / times["small"][0])
        evals.append(times["full"][1])
        print(f"repeat {repeat + 1} ({order[0]} first): full {times['full'][0]:.2f} s "
              f"(evaluation {times['full'][1]:.2f} s), small {times['small'][0]:.2f} s, "
              f"ratio {ratios[-1]:.3f}; forward passes alone {forwards[-1]:.2f} s")
    ratio = statistics.median(ratios)
    print(f"median full/small {ratio:.3f} (target ≤ 1.35): {'met' if ratio <= 1.35 else 'NOT met'}; "
          f"evaluation of the full test set {statistics.median(evals):.2f} s, "
          f"its forward passes alone {statistics.median(forwards):.2f} s")


if __name__ == "__main__":
    main()
