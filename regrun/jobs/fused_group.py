"""Several runs trained as one fused group: each config prepared as it is alone
(jobs/run.py `prepare`), one vectorized training (regrun/training/fused.py), and each run's
own directory written as alone.

A member's directory holds what a run alone writes (config.json, targets.json, metrics.csv,
checkpoint.pt in the solo format, summary.json, model.pt, its log lines in regrun.log), so
`regrun compare` reads it and `regrun resume` continues it alone. A group stopped part-way
continues as a group: each member whose folder holds its interrupted run is prepared from
its checkpoint, and members that stand at the same step train on together. Its
`epoch_time_s` is the group's training time for the epoch plus the member's own evaluation.
"""

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from regrun.jobs.run import Prepared, prepare, train
from regrun.training.memory import available_bytes, chunk_size, member_bytes

log = logging.getLogger(__name__)


def group_size(first: Prepared, max_models: int | None) -> int:
    """How many members train at once: `max_models` at most, and as many as fit in half the
    free memory by `member_bytes`' estimate, which is logged."""
    setup = first.setup
    per_member = member_bytes(setup.model, setup.optimizer, setup.example, setup.settings.batch_size)
    free = available_bytes(setup.device)
    size = chunk_size(per_member, free, max_models)
    log.info("fused training: about %.1f MiB per member (parameters, gradients, optimizer state, one batch's "
             "activations); %s free on %s; at most %s members at once%s", per_member / 2**20,
             f"{free / 2**30:.1f} GiB" if free else "unknown", setup.device, size if size < 1 << 30 else "all",
             f" (max_models={max_models})" if max_models else "")
    return size


def train_group(group: Sequence[Prepared], stop: Callable[[], bool] | None = None) -> None:
    """Train the prepared members as fused groups of those that stand at the same step, one
    such group after another (`train`: each member's summary is written when it ends)."""
    at: dict[tuple[int, int], list[Prepared]] = {}
    for p in group:
        at.setdefault(p.state.position, []).append(p)
    for together in at.values():
        train(together, fused=True, stop=stop)


def prepare_member(cfg: dict, out: Path, data_cache: dict) -> Prepared | None:
    """A member of a fused group, prepared as a run alone is (`prepare`, sharing the loaded
    data through `data_cache`); `NotFusable` for a run that must train alone, None when its
    folder holds this run, completed."""
    return prepare(cfg, out, data_cache=data_cache, fused=True)
