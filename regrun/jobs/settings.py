"""A run's whole config, read and checked once, before anything is built or written.

`read_settings` turns the composed config (plain data, as Hydra resolves it) into typed
`RunSettings`: each node is a frozen dataclass read by regrun/schema.py's `parse`, each
component's options are checked against its builder's signature (a plugin brings its own
schema that way), and every mistake is one `RegrunError` naming the key, the value and
what is allowed. Downstream code takes these settings; the plain config is kept only to
be written (config.json, summary.json) and compared (resume).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from regrun.components.datasets import DatasetSettings
from regrun.components.models import ModelSettings
from regrun.components.tasks import TaskSettings
from regrun.errors import RegrunError
from regrun.jobs.objective import ObjectiveSettings
from regrun.jobs.pruning import PruneSettings
from regrun.layout import SEED
from regrun.measure.firing import DEAD_WINDOW
from regrun.rundir.trackers import TrackerSettings, check_loggers
from regrun.schema import POSITIVE, AtLeast, Range, parse
from regrun.training.param_groups import OptimizerSettings
from regrun.training.settings import TrainerSettings
from regrun.training.targets import RegSettings, TargetSpec

# NumPy's legacy seeding takes 0 ≤ seed < 2³²; torch takes more, so NumPy's range is the one.
Seed = Annotated[int, Range(0, 2**32 - 1)]


@dataclass(frozen=True)
class SparsitySettings:
    """The `sparsity` node: |w| thresholds of the weight statistics, the first the headline."""

    thresholds: list[Annotated[float, POSITIVE]] = field(default_factory=lambda: [1e-3, 1e-4, 1e-2])
    # steps without firing after which a targeted unit counts as dead in training
    dead_window: Annotated[int, AtLeast(1)] = DEAD_WINDOW


@dataclass(frozen=True)
class RunSettings:
    """Every node of a run's config, checked; the keys of the config's top level."""

    seed: Seed
    trainer: TrainerSettings
    model: ModelSettings
    dataset: DatasetSettings
    optimizer: OptimizerSettings
    reg: RegSettings
    task: TaskSettings | None = None
    sparsity: SparsitySettings = field(default_factory=SparsitySettings)
    objective: ObjectiveSettings | None = None
    prune: PruneSettings = field(default_factory=PruneSettings)
    logger: dict[str, TrackerSettings] = field(default_factory=dict)  # tracker name → its settings

    @property
    def targets(self) -> dict[str, TargetSpec]:
        """The regularization targets by name (`reg.targets`)."""
        return self.reg.targets


def read_settings(cfg: Mapping[str, Any]) -> RunSettings:
    """The composed config, checked: typed settings, or a one-line `RegrunError`."""
    if not isinstance(cfg, Mapping):
        raise RegrunError(f"a run's config must be a mapping of its nodes, got {cfg!r}")
    logger = check_loggers({"logger": cfg.get("logger")})
    return parse("", cfg, RunSettings, logger=logger)


def fusable_keys(settings: RunSettings) -> set[str]:
    """The dotted config keys in which runs of one fused group may differ: the seed and each
    target's λ (training/fused.py stacks the copies; everything else must be equal)."""
    return {SEED, *(f"reg.targets.{name}.lambda" for name in settings.targets)}
