"""What a checkpoint carries, reading one safely, and which checkpoint a run resumes from.

Every checkpoint a run writes holds, beside Lightning's state, a record of what inference needs
(the net and its settings, the data set and its classes, the image size, resize and
normalisation, the project version), so that a checkpoint copied alone to another machine is
enough for eval.py, predict.py, export.py and serve.py (mnist_classifier.inference).

    python -m mnist_classifier.checkpoints upgrade CKPT   # adds the record to an older checkpoint
"""

import importlib
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from lightning.pytorch import Callback, LightningModule, Trainer
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mnist_classifier.config import LAST, override_key
from mnist_classifier.datasets import DATASETS
from mnist_classifier.errors import BadInput, entry_point, existing_file

RECORD = "mnist_classifier"  # the checkpoint's key for the inference record
# The modules whose classes a checkpoint's net may name: a checkpoint is data, and a `_target_`
# elsewhere (os.system, torch.hub.load) would run whatever it names when the net is built.
NET_MODULES = ("mnist_classifier.models.", "torch.nn.")
LAST_FILE = "last.ckpt"  # written by callbacks.last_checkpoint
HPC_CHECKPOINTS = "hpc_ckpt_*.ckpt"  # written by Lightning into the run dir when SLURM signals a requeue
CKPT_PATH_KEY = "ckpt_path"


def package_version() -> str:
    return metadata.version("mnist-classifier")


def upgrade_command(path: Path) -> str:
    return f"python -m mnist_classifier.checkpoints upgrade {path}"


def model_record(model: DictConfig) -> dict[str, Any]:
    """A model config as the record keeps it: its `_target_` and arguments, resolved."""
    arguments = OmegaConf.to_container(model, resolve=True)
    assert isinstance(arguments, dict)
    return arguments


def targets(node: Any) -> list[str]:
    """Every `_target_` in a nested config."""
    if isinstance(node, dict):
        own = [str(node["_target_"])] if "_target_" in node else []
        return own + [target for value in node.values() for target in targets(value)]
    if isinstance(node, list):
        return [target for value in node for target in targets(value)]
    return []


def build_net(model: dict[str, Any], path: Path) -> nn.Module:
    """The net a checkpoint's record describes, untrained; BadInput for a `_target_` outside
    NET_MODULES or for a class that is no torch module. Records of version 0.1 name the project's
    class by its `name`."""
    if "name" in model:
        model = {"_target_": f"mnist_classifier.models.{model['name']}"} | {
            key: value for key, value in model.items() if key != "name"
        }
    allowed = ", ".join(module.rstrip(".") for module in NET_MODULES)
    for target in targets(model):
        if not target.startswith(NET_MODULES):
            raise BadInput(
                f"{path} is invalid: its net names _target_ {target}, outside the modules a checkpoint "
                f"may name ({allowed})"
            )
    module, _, name = model["_target_"].rpartition(".")
    try:
        net_class = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise BadInput(f"{path} is invalid: its net names {model['_target_']}, which is not there") from error
    if not (isinstance(net_class, type) and issubclass(net_class, nn.Module)):
        raise BadInput(f"{path} is invalid: its net names {model['_target_']}, which is no torch module")
    return instantiate(model, _convert_="all")


def inference_record(model: DictConfig, data: DictConfig, mean: float | None, std: float | None) -> dict:
    """What inference needs from a run's model and data configs and its normalisation."""
    return {
        "version": package_version(),
        "model": model_record(model),
        "dataset": data.dataset,
        "classes": list(DATASETS[data.dataset].classes),
        "image_size": data.image_size,
        "resize": data.resize,
        "mean": mean,
        "std": std,
    }


class InferenceRecord(Callback):
    """Writes the inference record into every checkpoint the run saves."""

    def __init__(self, model: DictConfig, data: DictConfig) -> None:
        self.model, self.data = model, data

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        datamodule = trainer.datamodule
        checkpoint[RECORD] = inference_record(self.model, self.data, datamodule.mean, datamodule.std)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint as plain data: torch.load(weights_only=True), so no pickled code can run."""
    existing_file(path, "checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises a different type for each way a file is not one
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise BadInput(f"{path} is invalid: not a checkpoint (torch.load failed: {reason})") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise BadInput(f"{path} is invalid: not a Lightning checkpoint (it holds no state_dict)")
    return checkpoint


def check_same_model(checkpoint: dict[str, Any], model: nn.Module, path: Path) -> None:
    """Refuse a checkpoint whose weights do not have the names and shapes of `model`'s, naming the
    first difference."""
    ours = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    theirs = {name: list(tensor.shape) for name, tensor in checkpoint["state_dict"].items()}
    if ours == theirs:
        return
    if missing := sorted(ours.keys() - theirs.keys()):
        difference = f"it has no {missing[0]}"
    elif extra := sorted(theirs.keys() - ours.keys()):
        difference = f"it has {extra[0]}, which this model has not"
    else:
        name = next(name for name in ours if ours[name] != theirs[name])
        difference = f"{name} is {theirs[name]} there and {ours[name]} in this model"
    raise BadInput(
        f"ckpt_path={path} is invalid: it holds a different model than this config's: {difference}"
    )


def upgrade(path: Path) -> None:
    """Add the inference record to a checkpoint written before checkpoints carried one, from the
    config of the run that wrote it (<run>/.hydra/config.yaml) and its data module's state."""
    checkpoint = load_checkpoint(path)
    if RECORD in checkpoint:
        return
    config_file = path.parent.parent / ".hydra" / "config.yaml"
    if not config_file.is_file():
        raise BadInput(
            f"{path} is invalid for upgrade: {config_file} is missing, which holds its run's config"
        )
    run = OmegaConf.load(config_file)
    if "dataset" not in run.data:  # older configs knew only MNIST
        run.data.dataset = "mnist"
    normalisation = checkpoint.get("MNISTDataModule") or {}
    checkpoint[RECORD] = inference_record(
        run.model, run.data, normalisation.get("mean"), normalisation.get("std")
    )
    torch.save(checkpoint, path)


def resume_point(
    ckpt_path: str | None, run_dir: Path, log_dir: Path, overrides: list[str]
) -> tuple[Path | None, Path | None]:
    """(the checkpoint to resume from, the run dir whose logs and checkpoints the run continues),
    for a run whose own dir is `run_dir`.

    `ckpt_path=last` resumes the run's own dir when it holds a checkpoint (a fixed `hydra.run.dir`,
    a sweep job's dir named by its trial), else the newest `checkpoints/last.ckpt` of the runs under
    `log_dir` that ran with the same overrides. A checkpoint file inside a run dir
    (`<run>/checkpoints/*.ckpt`) continues that run; one elsewhere starts a new run dir from its
    weights and training state. Under SLURM, a run whose dir already holds a checkpoint is a
    requeued job: without ckpt_path it resumes its own newest checkpoint, as Lightning does with the
    hpc checkpoints it saves on the requeue signal.
    """
    if ckpt_path is None:
        requeued = own_checkpoint(run_dir) if on_slurm() else None
        return requeued, run_dir if requeued else None
    if ckpt_path == LAST:
        if (own := own_checkpoint(run_dir)) is not None:
            return own, run_dir
        path = latest_checkpoint(log_dir, overrides)
        return path, path.parent.parent
    path = Path(ckpt_path).resolve()
    run_dir = path.parent.parent
    inside_a_run = path.parent.name == "checkpoints" and (run_dir / ".hydra").is_dir()
    return path, run_dir if inside_a_run else None


def own_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint a run left in its own dir: `checkpoints/last.ckpt` (saved every epoch,
    and on SIGTERM), or Lightning's `hpc_ckpt_N.ckpt` (saved when SLURM signals a requeue)."""
    found = [*run_dir.glob(HPC_CHECKPOINTS), *(run_dir / "checkpoints").glob(LAST_FILE)]
    return max(found, key=lambda path: path.stat().st_mtime, default=None)


def on_slurm() -> bool:
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return SLURMEnvironment.detect()


def latest_checkpoint(log_dir: Path, overrides: list[str]) -> Path:
    """The newest last checkpoint of the run dirs with these overrides: runs (outputs/DATE/TIME) and
    sweep jobs (outputs/multiruns/DATE/TIME/JOB), so that a sweep run again with ckpt_path=last
    resumes each of its jobs."""
    wanted = without_ckpt_path(overrides)
    runs, jobs = (
        log_dir.glob(f"*/*/checkpoints/{LAST_FILE}"),
        log_dir.glob(f"multiruns/*/*/*/checkpoints/{LAST_FILE}"),
    )
    checkpoints = [*runs, *jobs]
    matching = [
        path for path in checkpoints if without_ckpt_path(recorded_overrides(path.parent.parent)) == wanted
    ]
    if not matching:
        shown = " ".join(wanted) or "none"
        raise BadInput(
            f"ckpt_path=last is invalid here: no run under {log_dir} with the same overrides ({shown}) has "
            f"a checkpoints/{LAST_FILE}; run without ckpt_path first, or give a checkpoint file"
        )
    return max(matching, key=lambda path: path.stat().st_mtime)


def recorded_overrides(run_dir: Path) -> list[str]:
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    return list(OmegaConf.load(overrides_file)) if overrides_file.is_file() else []


def without_ckpt_path(overrides: list[str]) -> list[str]:
    return sorted(line for line in overrides if override_key(line) != CKPT_PATH_KEY)


@entry_point
def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "upgrade":
        raise BadInput(f"{' '.join(argv) or 'no arguments'} is invalid: {upgrade_command('CKPT [CKPT ...]')}")
    for name in argv[1:]:
        upgrade(Path(name))
        print(f"upgraded: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
