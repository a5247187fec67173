"""An Optuna study as a Hydra sweeper: `python train.py -m hparams_search=optuna`.

The sweeper asks the study for trials, runs them as Hydra jobs through the configured launcher
(one after another, or `n_jobs` at a time), and tells the study each job's objective. The study
lives in storage (SQLite in the sweep dir by default), so running the same command again continues
it: finished trials are kept, and `n_trials` counts them all. Each job reports its validation
metric to its trial every epoch through `mnist_classifier.studies.trial_pruning`, so that the study's pruner can stop it.

Written for current Optuna (5.x): the `hydra-optuna-sweeper` package on PyPI pins optuna<3.
Optuna is imported when a sweep starts, not when Hydra loads its plugins for every run.
"""

import json
import logging
from typing import TYPE_CHECKING, Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.errors import CompactHydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig

from hydra_plugins.mnist_classifier_sweepers.grid_sweeper import set_hydra_config, start_sweep
from mnist_classifier.errors import one_line
from mnist_classifier.studies import TRIAL_NUMBER_KEY, study_storage

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)


class BadSweep(CompactHydraException):
    """A setting the sweep cannot run with; Hydra prints it as one line."""


class OptunaSweeper(Sweeper):
    """Runs `n_trials` trials of an Optuna study over the search space `params` (Hydra's sweep
    syntax: `choice(...)`, `range(...)`, `interval(a, b)`, tagged `log` and/or `int`), maximising or
    minimising the job's returned `objective`. Sweep overrides on the command line join `params`."""

    def __init__(
        self,
        study_name: str,
        storage: str | None,
        direction: str,
        objective: str,
        n_trials: int,
        n_jobs: int,
        sampler: DictConfig | None = None,
        params: DictConfig | None = None,
    ) -> None:
        self.study_name = study_name
        self.storage = storage
        self.direction = direction
        self.objective = objective
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.sampler = sampler
        self.params = dict(params or {})

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        set_hydra_config(config)
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        import optuna

        for name in ("n_trials", "n_jobs"):
            if getattr(self, name) < 1:
                raise BadSweep(f"hydra.sweeper.{name}={getattr(self, name)} is invalid: it must be >= 1")
        search_space, fixed = self._search_space(arguments)
        sweep_dir = start_sweep(self.config)

        storage = study_storage(self.storage, sweep_dir)
        study = optuna.create_study(
            study_name=self.study_name, storage=storage, direction=self.direction, load_if_exists=True
        )
        study.sampler = self._sampler(len(study.trials))
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            log.warning("trial %d was interrupted: marked failed, not counted in n_trials", trial.number)
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        log.info(
            "study %s in %s: %d of %d trials done",
            self.study_name,
            storage,
            counted(study),
            self.n_trials,
        )

        while (done := counted(study)) < self.n_trials:
            trials = [study.ask(search_space) for _ in range(min(self.n_jobs, self.n_trials - done))]
            batch = [trial_overrides(fixed, trial) for trial in trials]
            self.validate_batch_is_legal(batch)
            # Job numbers are trial numbers, so a resumed study's run dirs do not collide.
            for trial, job in zip(trials, self.launcher.launch(batch, trials[0].number), strict=True):
                self._tell(study, trial, job)

    def _search_space(self, arguments: list[str]) -> tuple[dict[str, Any], list[str]]:
        """The distributions of the sweep overrides, and the fixed overrides every trial gets."""
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        lines = [f"{key}={value}" for key, value in self.params.items()] + arguments
        overrides = {override.key_or_group: override for override in parser.parse_overrides(lines)}
        search_space = {
            key: distribution(override) for key, override in overrides.items() if override.is_sweep_override()
        }
        fixed = [override.input_line for override in overrides.values() if not override.is_sweep_override()]
        return search_space, fixed

    def _sampler(self, existing_trials: int) -> "optuna.samplers.BaseSampler | None":
        """The configured sampler; its seed is offset by the trials already run, so that a resumed
        study does not draw its first random trials again."""
        if self.sampler is None:
            return None
        seed = self.sampler.get("seed")
        return instantiate(self.sampler, **({"seed": seed + existing_trials} if seed is not None else {}))

    def _tell(self, study: "optuna.Study", trial: "optuna.Trial", job: JobReturn) -> None:
        import optuna

        try:
            value = job.return_value[self.objective]
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        except Exception as error:  # the job failed, or returned no objective: the study goes on
            trial.set_user_attr("error", one_line(error))
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, value)


def counted(study: "optuna.Study") -> int:
    """The trials that count towards n_trials: finished, pruned, or failed by their own error (not
    the ones a killed sweep left behind)."""
    from optuna.trial import TrialState

    return sum(
        trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (trial.state == TrialState.FAIL and "error" in trial.user_attrs)
        for trial in study.get_trials(deepcopy=False)
    )


def distribution(override: Override) -> "optuna.distributions.BaseDistribution":
    """An Optuna distribution for a Hydra sweep override."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    sweep = override.value()
    if isinstance(sweep, ChoiceSweep):
        return CategoricalDistribution([as_choice(value) for value in sweep.list])
    if isinstance(sweep, RangeSweep):
        return CategoricalDistribution(list(override.sweep_iterator()))
    if isinstance(sweep, IntervalSweep):
        log_scale = "log" in sweep.tags
        if "int" in sweep.tags:
            return IntDistribution(int(sweep.start), int(sweep.end), log=log_scale)
        return FloatDistribution(sweep.start, sweep.end, log=log_scale)
    raise BadSweep(
        f"{override.input_line} is not supported by the optuna sweeper: use choice(...), range(...) "
        "or interval(a, b), optionally tagged: tag(log, interval(a, b)), tag(int, interval(a, b))"
    )


def trial_overrides(fixed: list[str], trial: "optuna.Trial") -> list[str]:
    """A trial's job: the fixed overrides, the trial's values, and which trial it is."""
    values = [f"{key}={'null' if value is None else value}" for key, value in trial.params.items()]
    return [*fixed, *values, f"{TRIAL_NUMBER_KEY}={trial.number}"]


def as_choice(value: Any) -> Any:
    """Optuna's categories must be None, bool, int, float or str: lists become override text."""
    return json.dumps(value, separators=(",", ":")) if isinstance(value, list | dict) else value
