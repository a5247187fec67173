"""The sweep report: every job of a sweep ranked, as a table (CSV, Markdown) and plots (PNG).

Each job of a sweep leaves `job.json` in its run dir (written by the `JobRecords` Hydra callback
when the job ends, whether it finished, was pruned or failed). The report reads those records, so
it can be made again at any time for an existing sweep dir:

    python -m mnist_classifier.report outputs/multiruns/2026-11-23/10-00-00-000000
"""

import csv
import json
import statistics
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from matplotlib import pyplot
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from mnist_classifier.errors import BadInput, entry_point
from mnist_classifier.job_records import JOB_RECORD
from mnist_classifier.overrides import override_key
from mnist_classifier.studies import STUDY_FILE

METRIC, TEST_METRIC = "val/acc_best", "test/acc"
STATUS_ORDER = ("finished", "pruned", "failed", "unfinished")


@dataclass
class Job:
    """One job of a sweep as the report shows it."""

    name: str  # the run dir's name: the job number and its overrides
    overrides: dict[str, str]
    status: str  # one of STATUS_ORDER; unfinished: no record, so the job was killed or still runs
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    wall_s: float | None = None

    @property
    def score(self) -> float:
        return self.metrics.get(METRIC, float("nan"))


def read_jobs(sweep_dir: Path) -> list[Job]:
    """Every job of the sweep: the run dirs holding Hydra's record of their overrides."""
    jobs = []
    for overrides_file in sorted(sweep_dir.glob("*/.hydra/overrides.yaml")):
        run_dir = overrides_file.parent.parent
        record_file = run_dir / JOB_RECORD
        if record_file.exists():
            record = json.loads(record_file.read_text())
        else:
            record = {"status": "unfinished", "error": "no record: the job was killed or is still running"}
        jobs.append(
            Job(
                name=run_dir.name,
                overrides=run_overrides(run_dir),
                status=record["status"],
                error=record.get("error", ""),
                metrics=record.get("metrics") or {},
                wall_s=record.get("wall_s"),
            )
        )
    return rank(jobs)


def run_overrides(run_dir: Path) -> dict[str, str]:
    """What the job ran with, as its run dir's name shows it: without the keys Hydra leaves out of
    the name (paths, and what the sweeper adds itself, e.g. the Optuna trial number)."""
    hydra_dir = run_dir / ".hydra"
    excluded = OmegaConf.load(hydra_dir / "hydra.yaml").hydra.job.config.override_dirname.exclude_keys
    lines = OmegaConf.load(hydra_dir / "overrides.yaml")
    return {override_key(line): line.split("=", 1)[1] for line in lines if override_key(line) not in excluded}


def rank(jobs: list[Job]) -> list[Job]:
    """Finished jobs best first by best val accuracy, then pruned, failed and unfinished ones."""
    return sorted(jobs, key=lambda job: (STATUS_ORDER.index(job.status), -_or_minus_inf(job.score)))


def swept_keys(jobs: list[Job]) -> list[str]:
    """The overrides whose values differ between jobs: what the sweep varied."""
    keys = sorted({key for job in jobs for key in job.overrides})
    return [key for key in keys if len({job.overrides.get(key) for job in jobs}) > 1]


def common_overrides(jobs: list[Job]) -> list[str]:
    """The overrides every job ran with."""
    varied = set(swept_keys(jobs))
    return sorted({f"{k}={v}" for job in jobs for k, v in job.overrides.items() if k not in varied})


def seed_groups(jobs: list[Job]) -> dict[str, list[Job]]:
    """Finished jobs grouped by their swept values other than the seed; only groups of several."""
    keys = [key for key in swept_keys(jobs) if key != "seed"]
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        if job.status == "finished":
            label = " ".join(f"{key}={job.overrides.get(key, '')}" for key in keys) or "(all jobs)"
            groups.setdefault(label, []).append(job)
    return {label: members for label, members in groups.items() if len(members) > 1}


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def markdown(sweep_dir: Path, jobs: list[Job]) -> str:
    keys = swept_keys(jobs)
    counts = ", ".join(f"{sum(j.status == s for j in jobs)} {s}" for s in STATUS_ORDER)
    lines = [
        f"# Sweep report: {sweep_dir}",
        "",
        f"{len(jobs)} jobs: {counts}. Ranked by best validation accuracy (`{METRIC}`); a job's run dir",
        "(its TensorBoard run) is named by its number and overrides.",
        f"Common overrides: `{' '.join(common_overrides(jobs)) or 'none'}`",
        "",
        "| rank | job | " + " | ".join(keys) + " | best val acc | test acc | epochs | wall s | status |",
        "|" + " --- |" * (len(keys) + 7),
    ]
    for position, job in enumerate(jobs, start=1):
        values = [job.overrides.get(key, "") for key in keys]
        status = f"{job.status}: {job.error}" if job.error else job.status
        cells = [
            str(position),
            job.name.split("_", 1)[0],
            *values,
            *_metric_cells(job),
            status.replace("|", "\\|"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    groups = seed_groups(jobs)
    if groups:
        lines += [
            "",
            "## Across seeds (mean ± standard deviation of the finished jobs)",
            "",
            "| configuration | seeds | best val acc | test acc |",
            "| --- | --- | --- | --- |",
        ]
        for label, members in groups.items():
            val = mean_std([job.score for job in members])
            test = mean_std([job.metrics.get(TEST_METRIC, float("nan")) for job in members])
            lines.append(f"| {label} | {len(members)} | {val} | {test} |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, jobs: list[Job]) -> None:
    keys = swept_keys(jobs)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["rank", "run_dir", *keys, "best_val_acc", "test_acc", "epochs", "wall_s", "status", "error"]
        )
        for position, job in enumerate(jobs, start=1):
            writer.writerow(
                [
                    position,
                    job.name,
                    *(job.overrides.get(key, "") for key in keys),
                    job.metrics.get(METRIC, ""),
                    job.metrics.get(TEST_METRIC, ""),
                    job.metrics.get("epochs", ""),
                    job.wall_s if job.wall_s is not None else "",
                    job.status,
                    job.error,
                ]
            )


def metric_figure(jobs: list[Job]) -> Figure | None:
    """Best val accuracy of each finished job against each swept value; None if nothing varied."""
    keys = [key for key in swept_keys(jobs) if key != "seed"] or swept_keys(jobs)
    finished = [job for job in jobs if job.status == "finished"]
    if not keys or not finished:
        return None
    figure = Figure(figsize=(4 * len(keys), 3.5), dpi=100)
    for axes, key in zip(figure.subplots(1, len(keys), squeeze=False)[0], keys, strict=True):
        values = sorted({job.overrides.get(key, "") for job in finished}, key=_numeric_first)
        for x, value in enumerate(values):
            scores = [job.score for job in finished if job.overrides.get(key, "") == value]
            axes.scatter([x] * len(scores), scores, color="tab:blue", alpha=0.6)
            axes.hlines(statistics.mean(scores), x - 0.2, x + 0.2, color="tab:red")
        axes.set_xticks(range(len(values)), values, rotation=30, ha="right")
        axes.set(xlabel=key, ylabel=f"{METRIC} (red: mean)")
    figure.suptitle("best validation accuracy against the swept values")
    figure.tight_layout()
    return figure


def write_study_plots(sweep_dir: Path) -> list[Path]:
    """The Optuna study's optimisation history and parameter importances, when the sweep has one."""
    storage = sweep_dir / STUDY_FILE
    if not storage.exists():
        return []
    url = f"sqlite:///{storage}"
    written = []
    for name in optuna.get_all_study_names(url):
        study = optuna.load_study(study_name=name, storage=url)
        plots = [("history", optuna.visualization.matplotlib.plot_optimization_history)]
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if len(complete) >= 2:  # importances need something to compare
            plots.append(("importances", optuna.visualization.matplotlib.plot_param_importances))
        for kind, plot in plots:
            with warnings.catch_warnings(category=optuna.exceptions.ExperimentalWarning, action="ignore"):
                figure = plot(study).figure
            path = sweep_dir / f"optuna_{kind}.png"
            figure.savefig(path, bbox_inches="tight")
            pyplot.close(figure)  # Optuna draws with pyplot, which keeps every figure until closed
            written.append(path)
    return written


def write_report(sweep_dir: Path, echo: bool = True) -> list[Job]:
    """Write report.csv, report.md and report.png (plus the Optuna plots) into the sweep dir."""
    jobs = read_jobs(sweep_dir)
    text = markdown(sweep_dir, jobs)
    (sweep_dir / "report.md").write_text(text)
    write_csv(sweep_dir / "report.csv", jobs)
    figure = metric_figure(jobs)
    if figure is not None:
        figure.savefig(sweep_dir / "report.png")
    plots = write_study_plots(sweep_dir)
    if echo:
        print(text + "\n".join(f"plot: {path}" for path in plots))
    return jobs


def _metric_cells(job: Job) -> list[str]:
    def cell(name: str, spec: str) -> str:
        return format(job.metrics[name], spec) if name in job.metrics else ""

    wall = f"{job.wall_s:.1f}" if job.wall_s is not None else ""
    return [cell(METRIC, ".4f"), cell(TEST_METRIC, ".4f"), cell("epochs", "d"), wall]


def _or_minus_inf(value: float) -> float:
    return float("-inf") if value != value else value  # NaN (no score) ranks last


def _numeric_first(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


@entry_point
def main(argv: list[str]) -> int:
    if len(argv) != 1:
        raise BadInput(f"{' '.join(argv) or 'no arguments'} is invalid: python -m mnist_classifier.report SWEEP_DIR")
    sweep_dir = Path(argv[0])
    if not any(sweep_dir.glob("*/.hydra/overrides.yaml")):
        raise BadInput(f"{sweep_dir} is invalid: it holds no sweep jobs (no */.hydra/overrides.yaml)")
    write_report(sweep_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
