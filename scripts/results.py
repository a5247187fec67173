"""The README's Results: each recipe trained with three seeds, and the table made from their sweeps.

    python scripts/results.py run                 # every recipe: python train.py -m <recipe> seed=1,2,3
    python scripts/results.py run lenet_best      # one of them
    python scripts/results.py table               # print the tables from outputs/results/
    python scripts/results.py table --readme README.md   # and write them into the README

Each recipe's sweep runs in `outputs/results/<recipe>/`, one job at a time so that the seconds are
those of a run alone on the machine. The table gives the test accuracy on the official test set
(the mean ± standard deviation over the seeds, from the sweep report's records), the epochs, the
best epoch and the seconds of a run (the median over the seeds, as other work on a shared machine
slows some runs); for `lenet_best` also what its three checkpoints reach together (eval.py's
ensemble).
"""

import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mnist_classifier.errors import ArgumentParser, BadInput, entry_point

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "outputs" / "results"
SEEDS = (1, 2, 3)
START, END = "<!-- results:start -->", "<!-- results:end -->"


@dataclass(frozen=True)
class Recipe:
    name: str
    dataset: str
    overrides: tuple[str, ...]
    ensemble: bool = False  # also score the seeds' checkpoints together

    @property
    def command(self) -> str:
        return " ".join(("python train.py", *self.overrides))


RECIPES = (
    Recipe("default", "MNIST", ()),
    Recipe("lenet_best", "MNIST", ("experiment=lenet_best",), ensemble=True),
    Recipe("lenet_fast", "MNIST", ("experiment=lenet_fast",)),
    Recipe("mlp", "MNIST", ("model=mlp",)),
    Recipe("mlp_best", "MNIST", ("experiment=mlp_best",)),
    Recipe("fashion_default", "Fashion-MNIST", ("data=fashion_mnist",)),
    Recipe("fashion_best", "Fashion-MNIST", ("experiment=fashion_best",)),
)


def run(recipe: Recipe) -> None:
    seeds = ",".join(map(str, SEEDS))
    command = [sys.executable, str(ROOT / "train.py"), "-m", *recipe.overrides, f"seed={seeds}"]
    subprocess.run([*command, f"hydra.sweep.dir={RESULTS / recipe.name}"], cwd=ROOT, check=True)


def ensemble_accuracy(sweep_dir: Path) -> float:
    """The test accuracy of the mean of the seeds' best checkpoints' probabilities."""
    from mnist_classifier.datasets import default_data_dir, read_split
    from mnist_classifier.inference import ensemble_probabilities, load_for_inference, score

    models = [load_for_inference(path) for path in sorted(sweep_dir.glob("*/checkpoints/epoch*.ckpt"))]
    dataset = models[0].dataset
    images, labels = read_split(default_data_dir(dataset), dataset, train=False)
    return score(ensemble_probabilities(models, images)[-1], labels).accuracy


BUSY_SHARE = 0.1  # other processes' CPU seconds beside a run, as a share of its wall seconds


def check_idle(job, recipe: Recipe) -> None:
    """Refuse a run's seconds when other processes took CPU beside it (its job.json says how much)."""
    from mnist_classifier.records import read_record

    others = (read_record(Path(job.run_dir)) or {}).get("others_cpu_s")
    if others is None or others > BUSY_SHARE * job.wall_s:
        beside = "an unknown amount" if others is None else f"{others:.0f} CPU s"
        raise BadInput(
            f"{job.run_dir} is invalid for the table's seconds: other processes took {beside} beside its "
            f"{job.wall_s:.0f} s; run python scripts/results.py run {recipe.name} again on an idle machine"
        )


def percent(values: list[float]) -> str:
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}%"


def tables() -> str:
    from mnist_classifier.report import read_jobs
    from mnist_classifier.selection import Selection

    lines = []
    for dataset in dict.fromkeys(recipe.dataset for recipe in RECIPES):
        lines += [
            f"**{dataset}**, test accuracy on the official test set (mean ± standard deviation over seeds "
            f"{', '.join(map(str, SEEDS))}):",
            "",
            "| command | test accuracy | epochs | best epoch | seconds a run (median) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for recipe in (recipe for recipe in RECIPES if recipe.dataset == dataset):
            jobs = [job for job in read_jobs(RESULTS / recipe.name, Selection()) if job.status == "finished"]
            if len(jobs) != len(SEEDS):
                lines.append(
                    f"| `{recipe.command}` | not run yet: `python scripts/results.py run {recipe.name}` "
                    "| | | |"
                )
                continue
            accuracy = percent([job.metrics["test/acc"] for job in jobs])
            best = " to ".join(str(f(job.metrics["best_epoch"] for job in jobs)) for f in (min, max))
            seconds = statistics.median(job.wall_s for job in jobs)
            for job in jobs:
                check_idle(job, recipe)
            epochs = jobs[0].metrics["epochs"]
            lines.append(f"| `{recipe.command}` | {accuracy} | {epochs} | {best} | {seconds:.0f} |")
            if recipe.ensemble:
                together = 100 * ensemble_accuracy(RESULTS / recipe.name)
                files = " ".join(f"<seed {seed}>.ckpt" for seed in SEEDS)
                lines.append(f"| the three together: `python eval.py {files}` | {together:.2f}% | | | |")
        lines.append("")
    machine = (
        "a 2-core x86-64 CPU, torch's default threads, one run at a time on an otherwise idle machine "
        f"(other processes took under {BUSY_SHARE:.0%} of each run's time on a core)"
    )
    lines.append(
        f"Made by `python scripts/results.py run` and `python scripts/results.py table` on {machine}."
    )
    return "\n".join(lines)


def write_readme(readme: Path, text: str) -> None:
    content = readme.read_text()
    before, rest = content.split(START, 1)
    _, after = rest.split(END, 1)
    readme.write_text(f"{before}{START}\n{text}\n{END}{after}")


@entry_point
def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="scripts/results.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    to_run = commands.add_parser("run", help="train the recipes with each seed")
    to_run.add_argument("names", nargs="*", metavar="RECIPE", help="default: all of them")
    table = commands.add_parser("table", help="print the tables from the recipes' sweeps")
    table.add_argument("--readme", type=Path, help="write them between the results markers of this file")
    args = parser.parse_args(argv)
    if args.command == "run":
        known = [recipe.name for recipe in RECIPES]
        if unknown := [name for name in args.names if name not in known]:
            raise BadInput(f"{unknown[0]} is invalid: give recipes of {', '.join(known)}")
        for recipe in RECIPES:
            if not args.names or recipe.name in args.names:
                run(recipe)
        return 0
    text = tables()
    print(text)
    if args.readme:
        write_readme(args.readme, text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
