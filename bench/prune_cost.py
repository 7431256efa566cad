"""What the pruning evaluation costs beyond its test-set evaluations.

The default MLP (conf/model/mlp.yaml) on the MNIST test set, through regrun's own path
(`evaluate_pruning` with the default `prune` node: 5 global levels, and each of the 3
Linear layers alone at the same levels): 1 + 5 + 3·5 = 21 evaluations of the task's
figures. Against it, the same number of plain evaluations (`task_figures`) of the model
as it is. The difference is what pruning adds: ranking the weights, zeroing them in place,
counting the zeros and putting the tensors back from their one saved copy.

Each repeat times both, alternating which goes first, and the verdict uses the median of
the per-repeat ratios (steadier on a shared machine than either time). The model is
trained for `--steps` steps first (0: its initial weights; the cost is the same).

Target: pruning / plain ≤ 1.2.

    python bench/prune_cost.py --data-root ../shared/data --repeats 5
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

from regrun.config import conf_dir  # noqa: E402
from regrun.jobs.pruning import evaluate_pruning, pruned_tensors  # noqa: E402
from regrun.jobs.run import build, training_data, training_of  # noqa: E402
from regrun.measure.evaluation import task_figures  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=200, help="training steps before timing (AdamW, batch 64)")
    p.add_argument("--device", default="cpu")
    return p.parse_args()


def config(root: str, device: str) -> dict:
    """The real configs: the default MLP on MNIST, the default `prune` node."""
    overrides = [f"dataset.root={root}", "dataset.download=false", f"trainer.device={device}"]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return OmegaConf.to_container(compose(config_name="config", overrides=overrides), resolve=True)


def train(setup, data, steps: int) -> None:
    """A few steps of plain training, so that the weights are not the initial ones."""
    model, optimizer = setup.model, setup.optimizer
    model.train()
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))
    for step in range(steps):
        batch = data.train.take(order[step * 64:(step + 1) * 64].to(data.train.y.device))
        loss = torch.nn.functional.cross_entropy(model(batch.x), batch.y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    args = parse_args()
    setup = build(config(args.data_root, args.device))
    data = training_data(setup)
    train(setup, data, args.steps)
    settings, batch = setup.config.prune, setup.settings.eval_batch_size
    layers = len(pruned_tensors(setup.model, settings))
    evaluations = 1 + len(settings.levels) * (1 + layers * settings.per_layer)
    before = {k: v.clone() for k, v in setup.model.state_dict().items()}
    print(f"MLP {setup.cfg['model']['hidden']}, {len(data.test)} test samples, {len(settings.levels)} levels × "
          f"(global + {layers} layers) + 1 = {evaluations} evaluations, {torch.get_num_threads()} threads, "
          f"{setup.device}")

    def pruning() -> float:
        sync(setup.device)
        started = time.perf_counter()
        evaluate_pruning(setup.model, setup.task, data, settings, training_of(setup))
        sync(setup.device)
        return time.perf_counter() - started

    def plain() -> float:
        sync(setup.device)
        started = time.perf_counter()
        for _ in range(evaluations):
            task_figures(setup.model, setup.task, data.test, batch)
        sync(setup.device)
        return time.perf_counter() - started

    pruning(), plain()  # warm-up: first-call allocations
    ratios = []
    for repeat in range(args.repeats):
        order = (("pruning", pruning), ("plain", plain)) if repeat % 2 == 0 else (("plain", plain), ("pruning", pruning))
        times = {name: fn() for name, fn in order}
        ratios.append(times["pruning"] / times["plain"])
        print(f"repeat {repeat + 1} ({order[0][0]} first): pruning {times['pruning']:.3f} s, "
              f"{evaluations} plain evaluations {times['plain']:.3f} s, ratio {ratios[-1]:.3f}")
    after = setup.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the model was not put back as it was"
    ratio = statistics.median(ratios)
    print(f"median pruning / plain {ratio:.3f} (target ≤ 1.2): {'met' if ratio <= 1.2 else 'NOT met'}; "
          f"the model is as it was")


if __name__ == "__main__":
    main()
