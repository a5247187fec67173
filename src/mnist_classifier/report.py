"""The sweep report: every job of a sweep ranked, as a table (CSV, Markdown) and plots (PNG).

A grid sweep's jobs leave `job.json` in their run dirs (the `JobRecords` Hydra callback writes it
when a job ends, whether it finished, was pruned or failed); an Optuna sweep's trials are read
from the study's storage, where each worker's sweeper keeps its jobs' records, so that the report
of a study that several workers share lists every trial. It can be made again at any time:

    python -m mnist_classifier.report outputs/multiruns/2026-11-23/10-00-00-000000
    python -m mnist_classifier.report outputs/studies/lenet
    python -m mnist_classifier.report --storage postgresql+psycopg://... --study lenet --out report/
"""

import csv
import statistics
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from matplotlib import pyplot
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from mnist_classifier.errors import ArgumentParser, BadInput, entry_point
from mnist_classifier.records import read_links, sweep_records
from mnist_classifier.selection import SELECTION_ATTR, Selection
from mnist_classifier.studies import open_storage, shown_storage, sweep_study

TEST_METRIC = "test/acc"
STATUS_ORDER = ("finished", "pruned", "failed", "unfinished")
TRIAL_STATUS = {
    optuna.trial.TrialState.COMPLETE: "finished",
    optuna.trial.TrialState.PRUNED: "pruned",
    optuna.trial.TrialState.FAIL: "failed",
    optuna.trial.TrialState.RUNNING: "unfinished",
    optuna.trial.TrialState.WAITING: "unfinished",
}


@dataclass
class Job:
    """One job of a sweep (a trial of a study) as the report shows it."""

    name: str  # the run dir's name: the job (trial) number and its overrides
    overrides: dict[str, str]
    status: str  # one of STATUS_ORDER; unfinished: no record, so the job was killed or still runs
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    wall_s: float | None = None
    run_dir: str = ""  # empty for a trial whose job has not ended
    links: dict[str, str] = field(default_factory=dict)  # where trackers show it: {"mlflow": url}

    def ran_in(self, sweep_dir: Path) -> bool:
        """Whether the job ran in this sweep dir (not in another worker's)."""
        return bool(self.run_dir) and Path(self.run_dir).resolve().is_relative_to(sweep_dir.resolve())


def job_of(name: str, overrides: dict[str, str], record: dict[str, Any], run_dir: str) -> Job:
    """A job as its record (mnist_classifier.records) tells it."""
    metrics, wall_s = record.get("metrics") or {}, record.get("wall_s")
    links = read_links(Path(run_dir)) if run_dir else {}
    return Job(name, overrides, record["status"], record.get("error", ""), metrics, wall_s, run_dir, links)


def read_jobs(sweep_dir: Path, selection: Selection) -> list[Job]:
    """Every job of the sweep: the run dirs holding Hydra's record of their overrides."""
    records = sweep_records(sweep_dir)
    return rank(
        [job_of(run.name, overrides, record, str(run)) for run, overrides, record in records], selection
    )


def read_trials(study: optuna.Study, selection: Selection) -> list[Job]:
    """Every trial of the study, with the record its worker kept in the storage (user attr `job`)."""
    trials = study.get_trials(deepcopy=False)
    with warnings.catch_warnings(category=optuna.exceptions.ExperimentalWarning, action="ignore"):
        retried_as = {
            number: trial.number
            for trial in trials
            for number in optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(trial)
        }
    jobs = []
    for trial in trials:
        record = trial.user_attrs.get("job") or {}
        error = record.get("error") or _trial_state_note(trial, retried_as)
        name = Path(record["run_dir"]).name if "run_dir" in record else str(trial.number)
        overrides = record.get("overrides") or {key: str(value) for key, value in trial.params.items()}
        record = record | {"status": TRIAL_STATUS[trial.state], "error": error}
        jobs.append(job_of(name, overrides, record, record.get("run_dir", "")))
    return rank(jobs, selection)


def _trial_state_note(trial: optuna.trial.FrozenTrial, retried_as: dict[int, int]) -> str:
    """Why a trial without a record is where it is."""
    if trial.state == optuna.trial.TrialState.FAIL:
        retry = f"; retried as trial {retried_as[trial.number]}" if trial.number in retried_as else ""
        return f"its worker stopped sending heartbeats{retry}"
    return {optuna.trial.TrialState.RUNNING: "running", optuna.trial.TrialState.WAITING: "waiting"}.get(
        trial.state, ""
    )


def rank(jobs: list[Job], selection: Selection) -> list[Job]:
    """Finished jobs best first by the selection metric, then pruned, failed and unfinished ones."""
    return sorted(
        jobs, key=lambda job: (STATUS_ORDER.index(job.status), selection.rank(selection.score(job.metrics)))
    )


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
    """Over the values measured (NaN: a job that did not measure it)."""
    measured = [value for value in values if value == value]
    if len(measured) < 2:
        return "not measured" if not measured else f"{measured[0]:.4f}"
    return f"{statistics.mean(measured):.4f} ± {statistics.stdev(measured):.4f}"


def markdown(title: str, jobs: list[Job], selection: Selection) -> str:
    keys = swept_keys(jobs)
    best = f"best {selection.monitor}"
    trackers = sorted({tracker for job in jobs for tracker in job.links})  # a column of links each
    counts = ", ".join(f"{sum(j.status == s for j in jobs)} {s}" for s in STATUS_ORDER)
    finished = [job for job in jobs if job.status == "finished"]
    lines = [
        f"# Sweep report: {title}",
        "",
        f"{len(jobs)} jobs: {counts}. Ranked by the selection metric (`{selection.best_key}`, its "
        f"{selection.mode}); a job's run dir (its TensorBoard run) is named by its number (an Optuna "
        "study's trial number) and overrides.",
        f"Common overrides: `{' '.join(common_overrides(jobs)) or 'none'}`",
        f"Best: {_best(finished[0], selection) if finished else 'none finished'}",
        "",
        "| "
        + " | ".join(["rank", "job", *keys, best, "test acc", "epochs", "wall s", "status", *trackers])
        + " |",
        "|" + " --- |" * (len(keys) + 7 + len(trackers)),
    ]
    for position, job in enumerate(jobs, start=1):
        values = [job.overrides.get(key, "") for key in keys]
        status = f"{job.status}: {job.error}" if job.error else job.status
        cells = [
            str(position),
            job.name.split("_", 1)[0],
            *values,
            *_metric_cells(job, selection),
            status.replace("|", "\\|"),
            *(f"[run]({job.links[tracker]})" if tracker in job.links else "" for tracker in trackers),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    groups = seed_groups(jobs)
    if groups:
        lines += [
            "",
            "## Across seeds (mean ± standard deviation of the finished jobs)",
            "",
            f"| configuration | seeds | {best} | test acc |",
            "| --- | --- | --- | --- |",
        ]
        for label, members in groups.items():
            val = mean_std([selection.score(job.metrics) for job in members])
            test = mean_std([job.metrics.get(TEST_METRIC, float("nan")) for job in members])
            lines.append(f"| {label} | {len(members)} | {val} | {test} |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, jobs: list[Job], selection: Selection) -> None:
    keys = swept_keys(jobs)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["rank", "run_dir", *keys, selection.best_key, "test_acc", "epochs", "wall_s", "status", "error"]
        )
        for position, job in enumerate(jobs, start=1):
            writer.writerow(
                [
                    position,
                    job.name,
                    *(job.overrides.get(key, "") for key in keys),
                    job.metrics.get(selection.best_key, ""),
                    job.metrics.get(TEST_METRIC, ""),
                    job.metrics.get("epochs", ""),
                    job.wall_s if job.wall_s is not None else "",
                    job.status,
                    job.error,
                ]
            )


def metric_figure(jobs: list[Job], selection: Selection) -> Figure | None:
    """The selection metric's best of each finished job against each swept value; None if nothing
    varied."""
    keys = [key for key in swept_keys(jobs) if key != "seed"] or swept_keys(jobs)
    finished = [job for job in jobs if job.status == "finished"]
    if not keys or not finished:
        return None
    figure = Figure(figsize=(4 * len(keys), 3.5), dpi=100)
    for axes, key in zip(figure.subplots(1, len(keys), squeeze=False)[0], keys, strict=True):
        values = sorted({job.overrides.get(key, "") for job in finished}, key=_numeric_first)
        for x, value in enumerate(values):
            scores = [selection.score(job.metrics) for job in finished if job.overrides.get(key, "") == value]
            axes.scatter([x] * len(scores), scores, color="tab:blue", alpha=0.6)
            axes.hlines(statistics.mean(scores), x - 0.2, x + 0.2, color="tab:red")
        axes.set_xticks(range(len(values)), values, rotation=30, ha="right")
        axes.set(xlabel=key, ylabel=f"{selection.best_key} (red: mean)")
    figure.suptitle(f"best {selection.words} against the swept values")
    figure.tight_layout()
    return figure


def write_study_plots(out_dir: Path, study: optuna.Study) -> list[Path]:
    """The study's optimisation history and parameter importances."""
    plots = [("history", optuna.visualization.matplotlib.plot_optimization_history)]
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) >= 2:  # importances need something to compare
        plots.append(("importances", optuna.visualization.matplotlib.plot_param_importances))
    written = []
    for kind, plot in plots:
        with warnings.catch_warnings(category=optuna.exceptions.ExperimentalWarning, action="ignore"):
            figure = plot(study).figure
        path = out_dir / f"optuna_{kind}.png"
        figure.savefig(path, bbox_inches="tight")
        pyplot.close(figure)  # Optuna draws with pyplot, which keeps every figure until closed
        written.append(path)
    return written


def write_report(
    out_dir: Path, title: str, jobs: list[Job], selection: Selection, study: optuna.Study | None = None
) -> list[Job]:
    """Write report.csv, report.md and report.png (plus a study's plots) into out_dir, and print them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text = markdown(title, jobs, selection)
    (out_dir / "report.md").write_text(text)
    write_csv(out_dir / "report.csv", jobs, selection)
    figure = metric_figure(jobs, selection)
    if figure is not None:
        figure.savefig(out_dir / "report.png")
    plots = write_study_plots(out_dir, study) if study is not None else []
    print(text + "\n".join(f"plot: {path}" for path in plots))
    return jobs


def load_study(storage: str, study_name: str) -> optuna.Study:
    """The study, for reading; BadInput if the storage or the study is not there."""
    backend = open_storage(storage)
    names = [study.study_name for study in backend.get_all_studies()]
    if study_name not in names:
        raise BadInput(
            f"--study {study_name} is invalid: {shown_storage(storage)} holds "
            f"{'the studies ' + ', '.join(names) if names else 'no study'}"
        )
    return optuna.load_study(study_name=study_name, storage=backend)


def report_sweep(sweep_dir: Path, config: Mapping[str, Any]) -> list[Job]:
    """The report of a sweep, in its dir, from its config (multirun.yaml): an Optuna sweep's from its
    study, a grid's from its jobs, ranked by the config's selection metric."""
    selection = Selection.of(config)
    located = sweep_study(config.get("hydra", {}).get("sweeper", {}), sweep_dir)
    if located is None:
        return write_report(sweep_dir, str(sweep_dir), read_jobs(sweep_dir, selection), selection)
    return report_study(sweep_dir, *located, selection)


def report_study(
    out_dir: Path, storage: str, study_name: str, selection: Selection | None = None
) -> list[Job]:
    """The report of every trial of a study, whichever worker ran it; ranked by `selection`, else by
    the one the study was made with (its user attribute)."""
    study = load_study(storage, study_name)
    selection = selection or Selection(**study.user_attrs.get(SELECTION_ATTR, {}))
    title = f"study {study_name} in {shown_storage(storage)}"
    return write_report(out_dir, title, read_trials(study, selection), selection, study)


def _best(job: Job, selection: Selection) -> str:
    score = selection.score(job.metrics)
    return f"job {job.name.split('_', 1)[0]}, {selection.best_key} {score:.4f}, run dir `{job.run_dir}`"


def _metric_cells(job: Job, selection: Selection) -> list[str]:
    def cell(name: str, spec: str) -> str:
        return format(job.metrics[name], spec) if name in job.metrics else ""

    wall = f"{job.wall_s:.1f}" if job.wall_s is not None else ""
    return [cell(selection.best_key, ".4f"), cell(TEST_METRIC, ".4f"), cell("epochs", "d"), wall]


def _numeric_first(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


@entry_point
def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="python -m mnist_classifier.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", nargs="?", type=Path, help="a sweep dir: its report is written there")
    parser.add_argument("--storage", help="or an Optuna storage (database URL or journal file) ...")
    parser.add_argument("--study", help="... and the name of its study")
    parser.add_argument("--out", type=Path, default=Path("."), help="where a study's report goes (default .)")
    args = parser.parse_args(argv)
    if args.storage is not None:
        if args.sweep_dir is not None or args.study is None:
            raise BadInput(f"{' '.join(argv)} is invalid: give SWEEP_DIR, or --storage URL --study NAME")
        report_study(args.out, args.storage, args.study)
        return 0
    if args.sweep_dir is None:
        raise BadInput("no arguments is invalid: give SWEEP_DIR, or --storage URL --study NAME")
    sweep_dir = args.sweep_dir
    multirun = sweep_dir / "multirun.yaml"
    if not multirun.is_file() and not any(sweep_dir.glob("*/.hydra/overrides.yaml")):
        raise BadInput(
            f"{sweep_dir} is invalid: it holds no sweep (no multirun.yaml, no */.hydra/overrides.yaml)"
        )
    report_sweep(sweep_dir, OmegaConf.load(multirun) if multirun.is_file() else {})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
