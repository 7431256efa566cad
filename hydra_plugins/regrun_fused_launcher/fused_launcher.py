"""The `fused` Hydra launcher: Hydra finds this module in the `hydra_plugins` namespace
package, registers the Launcher subclass, and its config under hydra/launcher=fused.
The work is regrun's (regrun/cli/fused.py); this module only plugs it into Hydra."""

from collections.abc import Sequence
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class FusedLauncherConf:
    """hydra.launcher.* of `hydra/launcher=fused`."""

    _target_: str = "hydra_plugins.regrun_fused_launcher.fused_launcher.FusedLauncher"
    # Most members trained at once; a larger group trains in chunks of this size. null: as
    # many as fit in half the free memory (the estimate is logged before training).
    max_models: int | None = None


ConfigStore.instance().store(group="hydra/launcher", name="fused", node=FusedLauncherConf, provider="regrun")


class FusedLauncher(Launcher):
    """Trains the sweep's jobs that differ only in λ and seed as one vectorized model."""

    def __init__(self, max_models: int | None = None) -> None:
        self.max_models = max_models
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        """Keep what `launch` needs (Hydra calls this once per sweep)."""
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Run the jobs: fused groups and lone jobs; one JobReturn per job, in job order."""
        from regrun.cli.fused import launch  # torch and regrun load only when a sweep runs

        return launch(self, job_overrides, initial_job_idx)
