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
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from regrun.components.datasets import Split  # noqa: E402
from regrun.config import conf_dir  # noqa: E402
from regrun.jobs.run import Setup, build, training_data  # noqa: E402
from regrun.measure.capture import ActivationCapture  # noqa: E402
from regrun.measure.evaluation import evaluate, task_figures  # noqa: E402
from regrun.training.loop import Member, TrainState, train_epoch  # noqa: E402
from regrun.training.memory import reuse_freed_memory  # noqa: E402
from regrun.training.param_groups import build_grouped_optimizer  # noqa: E402
from regrun.training.step import SoloStep  # noqa: E402

TRAIN_SAMPLES = 30_000
SMALL_TEST = 200


class Silent:
    """A reporter that says nothing."""

    def start_epoch(self, epoch: int, steps: int) -> None:
        """Nothing to show."""

    def step(self, done: int, figures: list) -> None:
        """Nothing to show."""

    def end_epoch(self, label: str, row: dict) -> None:
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


def epoch(setup: Setup, data, test: Split, state: dict) -> tuple[float, float]:
    """One training epoch from `state`, then evaluate on `test`: (epoch seconds, evaluation seconds)."""
    model, settings = setup.model, setup.settings
    model.load_state_dict(state)
    optimizer, _ = build_grouped_optimizer(model, setup.cfg["optimizer"])
    started = time.perf_counter()
    with ActivationCapture(model, []) as capture:
        member = Member(model, optimizer, [], TrainState(torch.Generator().manual_seed(0)), print, print, print)
        train_epoch([member], SoloStep(model, optimizer, []), setup.task, data.train, settings, Silent(), capture)
    evaluated = time.perf_counter()
    evaluate(model, setup.task, test, settings.eval_batch_size, setup.thresholds)
    done = time.perf_counter()
    return done - started, done - evaluated


def forward_only(setup: Setup, test: Split) -> float:
    """Seconds of the evaluation's forward passes and the task's figures alone, no statistics."""
    started = time.perf_counter()
    task_figures(setup.model, setup.task, test, setup.settings.eval_batch_size)
    return time.perf_counter() - started


def main() -> None:
    args = parse_args()
    reuse_freed_memory()  # as `fit` does before training
    setup = build(config(args.data_root))
    data = training_data(setup)
    small = Split(data.test.x[:SMALL_TEST], data.test.y[:SMALL_TEST])
    state = {k: v.clone() for k, v in setup.model.state_dict().items()}
    print(f"CNN, {len(data.train)} training samples, test {len(data.test)} vs {SMALL_TEST}, "
          f"{torch.get_num_threads()} threads")
    ratios, evals, forwards = [], [], []
    for repeat in range(args.repeats):
        order = ("full", "small") if repeat % 2 == 0 else ("small", "full")
        times = {name: epoch(setup, data, data.test if name == "full" else small, state) for name in order}
        forwards.append(forward_only(setup, data.test))
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
