"""Bad input, across every entry point: one line `error: <what> is invalid: ...`, exit status 2,
before any work. In this process (each entry point's own checks and main); test_train.py and
test_eval.py run one case of each command as a process."""

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from mnist_classifier import report
from mnist_classifier.checkpoints import RECORD
from mnist_classifier.config import compose, preflight
from mnist_classifier.errors import failure_policy
from mnist_classifier.overrides import command_line_overrides
from mnist_classifier.training import run

from .conftest import TINY_TRAIN, TrainedRun, copy_dataset, script_module


@dataclass
class Context:
    data: Path  # the tiny MNIST
    tmp: Path
    run: TrainedRun

    def file(self, name: str, content: bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(content)
        return path

    def checkpoint_with(self, name: str, change: Callable[[dict], None]) -> Path:
        checkpoint = torch.load(self.run.best, weights_only=True)
        change(checkpoint)
        path = self.tmp / name
        torch.save(checkpoint, path)
        return path


def train(context: Context, *argv: str) -> None:
    """train.py in this process: its checks of the command line, then the run (data, checkpoint and
    model problems are found as it is built, before training)."""
    argv = (f"data.data_dir={context.data}", "data.download=false", *argv)
    with failure_policy():
        preflight(list(argv))
        flags, overrides = command_line_overrides(list(argv))
        if not flags & {"-m", "--multirun"}:
            run(compose(overrides, output_dir=context.tmp / "run"))


def command(script: str) -> Callable[..., None]:
    def main(context: Context, *argv: str) -> None:
        script_module(script).main(list(argv))

    return main


def predict(context: Context, *argv: str) -> None:
    """predict.py as its script runs it: the exit status is main's (a bad image is listed, the others read)."""
    sys.exit(script_module("predict.py").main(list(argv)))


def truncated_labels(context: Context) -> list[str]:
    data_dir = copy_dataset(context.data, context.tmp / "data")
    labels = data_dir / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-10])
    return [f"data.data_dir={data_dir}"]


def without_record(checkpoint: dict) -> None:
    del checkpoint[RECORD]


def own_net(checkpoint: dict) -> None:
    checkpoint[RECORD]["model"]["_target_"] = "mynets.TinyNet"


def fashion_record(checkpoint: dict) -> None:
    checkpoint[RECORD]["dataset"] = "fashion_mnist"


CASES: list[tuple[str, Callable, Callable[[Context], list[str]], str]] = [
    # train.py: values
    ("lr", train, lambda c: ["optimizer.lr=-0.1"], "optimizer.lr=-0.1 is invalid: a number > 0"),
    ("max_epochs", train, lambda c: ["trainer.max_epochs=abc"], "trainer.max_epochs=abc is invalid: an integer >= 1, or -1"),
    ("batch_size", train, lambda c: ["data.batch_size=1.5"], "data.batch_size=1.5 is invalid: an integer >= 1"),
    ("momentum", train, lambda c: ["optimizer.momentum=-1"], "optimizer.momentum=-1 is invalid: a number >= 0 and < 1"),
    ("seed", train, lambda c: ["seed=abc"], "seed=abc is invalid: an integer >= 0 and <= 4294967295"),
    ("val_size", train, lambda c: ["data.val_size=0"], "data.val_size=0 is invalid: an integer >= 1"),
    ("resize", train, lambda c: ["data.resize=nearest"], "data.resize=nearest is invalid: one of bilinear, pad"),
    ("hidden_sizes", train, lambda c: ["model.hidden_sizes=[120,0]"], "model.hidden_sizes=[120,0] is invalid: a list"),
    ("devices", train, lambda c: ["trainer.devices=0"], "trainer.devices=0 is invalid: an integer >= 1, or one of auto, -1 (-1: every device)"),
    ("precision", train, lambda c: ["trainer.precision=8"], "trainer.precision=8 is invalid: one of 32-true"),
    ("rotation", train, lambda c: ["augment=affine", "augment.rotation=-5"], "augment.rotation=-5 is invalid: a number >= 0 and <= 180"),
    ("probability", train, lambda c: ["augment=affine", "augment.p=1.5"], "augment.p=1.5 is invalid: a number >= 0 and <= 1"),
    ("graph+compile", train, lambda c: ["logger.tensorboard.log_graph=true", "classifier.compile=true"], "logger.tensorboard.log_graph=true is invalid with classifier.compile=true"),
    ("ema start", train, lambda c: ["callbacks=ema", "callbacks.ema.start_epoch=10"], "callbacks.ema.start_epoch=10 is invalid with trainer.max_epochs=10: the average would never start; give 0 to 9"),
    ("gpu", train, lambda c: ["trainer.accelerator=gpu"], "trainer.accelerator=gpu is invalid: this machine has no CUDA GPU"),
    # train.py: options and keys
    ("unknown option", train, lambda c: ["optimizer=adagrad"], "optimizer=adagrad is invalid: choose one of adam, adamw, nesterov, rmsprop, sgd"),
    ("unknown augment", train, lambda c: ["augment=warp"], "augment=warp is invalid: choose one of affine, elastic, fashion, none"),
    ("selection metric", train, lambda c: ["selection.monitor=test/acc"], "selection.monitor=test/acc is invalid: one of val/acc, val/loss, train/acc, train/loss_epoch"),
    ("selection mode", train, lambda c: ["selection.mode=highest"], "selection.mode=highest is invalid: one of max, min"),
    ("data set field", train, lambda c: ["~data.dataset.classes"], "data.dataset.classes is invalid: it is missing; give a list of two or more strings"),
    ("classes", train, lambda c: ["data.dataset.classes=[a,b,c]"], "{data}/MNIST/raw/train-labels-idx1-ubyte is invalid: its labels run 0 to 9, and data.dataset.classes names 3 classes"),
    ("unknown target", train, lambda c: ["model._target_=mynets.Net"], "model._target_=mynets.Net is invalid: it cannot be imported"),
    ("unknown argument", train, lambda c: ["+model.depth=3"], "model.depth is invalid: mnist_classifier.models.LeNet takes no argument depth"),
    ("unknown key", train, lambda c: ["optimizer.lrr=3"], "optimizer.lrr=3 is invalid: optimizer has no key 'lrr'"),
    ("list without -m", train, lambda c: ["optimizer.lr=0.1,0.01"], "optimizer.lr=0.1,0.01 is invalid without -m"),
    ("study without -m", train, lambda c: ["hparams_search=optuna"], "hparams_search=optuna is invalid without -m"),
    # train.py: what is found as the run is built
    ("lenet size", train, lambda c: ["data.image_size=12"], "image_size=12 is invalid for LeNet: it needs at least 16"),
    ("pad size", train, lambda c: ["data.image_size=20", "data.resize=pad"], "data.image_size=20 is invalid with data.resize=pad"),
    ("split", train, lambda c: [f"data.val_size={TINY_TRAIN}"], f"data.val_size={TINY_TRAIN} is invalid: it must be smaller than the {TINY_TRAIN} training images"),
    ("no data", train, lambda c: [f"data.data_dir={c.tmp / 'none'}"], "data.data_dir={tmp}/none is invalid: mnist is not in {tmp}/none/MNIST/raw and download is off"),
    ("no fashion", train, lambda c: ["data=fashion_mnist", f"data.data_dir={c.tmp}"], "data.data_dir={tmp} is invalid: fashion_mnist is not in {tmp}/FashionMNIST/raw"),
    ("corrupt data", train, truncated_labels, "{tmp}/data/MNIST/raw/train-labels-idx1-ubyte is invalid: it is truncated"),
    ("no checkpoint", train, lambda c: [f"ckpt_path={c.tmp / 'none.ckpt'}"], "ckpt_path={tmp}/none.ckpt is invalid: no such file"),
    ("not a checkpoint", train, lambda c: [f"ckpt_path={c.file('notes.ckpt', b'notes')}"], "{tmp}/notes.ckpt is invalid: not a checkpoint"),
    ("other model", train, lambda c: ["model=mlp", f"ckpt_path={c.run.last}"], "ckpt_path={last} is invalid: it holds a different model than this config's: it has no net.layers.1.bias"),
    ("nothing to resume", train, lambda c: ["ckpt_path=last", f"paths.log_dir={c.tmp / 'empty'}"], "ckpt_path=last is invalid here: no run under {tmp}/empty"),
    # sweeps: every swept value is checked before the first job
    ("swept lr", train, lambda c: ["-m", "optimizer.lr=0.1,-1"], "optimizer.lr=-1 is invalid: a number > 0"),
    ("swept option", train, lambda c: ["-m", "model=lenet,cnn"], "model=cnn is invalid: choose one of lenet, mlp"),
    ("grid interval", train, lambda c: ["-m", "optimizer.lr=interval(0.01,0.1)"], "optimizer.lr=interval(0.01,0.1) is invalid: a grid sweeps lists"),
    ("n_trials", train, lambda c: ["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials=0 is invalid: an integer >= 1"),
    # eval.py, predict.py, export.py and the report
    ("eval usage", command("eval.py"), lambda c: [], "eval.py: the following arguments are required: CKPT"),
    ("eval missing", command("eval.py"), lambda c: [str(c.tmp / "none.ckpt")], "{tmp}/none.ckpt is invalid: no such checkpoint file"),
    ("eval no record", command("eval.py"), lambda c: [str(c.checkpoint_with("no_record.ckpt", without_record))], "{tmp}/no_record.ckpt is invalid: it has no inference record, so it was not written by train.py of this project"),
    ("eval untrusted", command("eval.py"), lambda c: [str(c.checkpoint_with("own.ckpt", own_net))], "{tmp}/own.ckpt is invalid: its net names _target_ mynets.TinyNet, outside the modules a checkpoint may name (mnist_classifier.models, torch.nn); if you trust mynets, give --trust mynets or set MNIST_CLASSIFIER_TRUST=mynets"),
    ("eval ensemble", command("eval.py"), lambda c: [str(c.run.best), str(c.checkpoint_with("fashion.ckpt", fashion_record))], "{tmp}/fashion.ckpt is invalid in this ensemble: its data set is fashion_mnist, "),
    ("eval data", command("eval.py"), lambda c: [str(c.run.best), "--data-dir", str(c.tmp)], "{tmp}/MNIST/raw is invalid: it lacks t10k-images-idx3-ubyte"),
    ("predict text", predict, lambda c: [str(c.run.best), str(c.file("notes.png", b"not an image"))], "{tmp}/notes.png is invalid: it is not an image"),
    ("predict missing", predict, lambda c: [str(c.run.best), str(c.tmp / "none.png")], "{tmp}/none.png is invalid: there is no such file"),
    ("export format", command("export.py"), lambda c: [str(c.run.best), "--formats", "pdf"], "export.py: argument --formats: invalid choice: 'pdf'"),
    ("export file", command("export.py"), lambda c: [str(c.file("notes.ckpt", b"notes"))], "{tmp}/notes.ckpt is invalid: not a checkpoint"),
    ("report", lambda c, *argv: report.main(list(argv)), lambda c: [str(c.tmp)], "{tmp} is invalid: it holds no sweep (no multirun.yaml"),
    # train.py tune=lr_find: its settings, and what Lightning's range test cannot run with
    ("tune rates", train, lambda c: ["tune=lr_find", "tune.max_lr=1e-6"], "tune.max_lr=1e-06 is invalid with tune.min_lr=1e-05: the test raises the rate from min_lr to max_lr; give a larger max_lr"),
    ("tune steps", train, lambda c: ["tune=lr_find", "tune.num_training=10"], "tune.num_training=10 is invalid: an integer >= 20"),
    ("tune mode", train, lambda c: ["tune=lr_find", "tune.mode=cubic"], "tune.mode=cubic is invalid: one of exponential, linear"),
    ("tune with -m", train, lambda c: ["-m", "tune=lr_find"], "tune=lr_find is invalid with -m: the range test is one run; run it once without -m"),
    ("tune ddp", train, lambda c: ["tune=lr_find", "trainer=ddp"], "tune=lr_find is invalid with trainer.strategy=ddp: Lightning's range test runs in one process on one device; use trainer=default"),
    ("tune devices", train, lambda c: ["tune=lr_find", "trainer.devices=2"], "tune=lr_find is invalid with trainer.devices=2: Lightning's range test runs in one process on one device; give 1"),
    ("tune nodes", train, lambda c: ["tune=lr_find", "+trainer.num_nodes=2"], "tune=lr_find is invalid with trainer.num_nodes=2: Lightning's range test runs in one process on one device; give 1"),
    ("tune fast_dev_run", train, lambda c: ["tune=lr_find", "debug=fast"], "tune=lr_find is invalid with trainer.fast_dev_run=5: Lightning skips the range test in a fast_dev_run; drop debug=fast"),
    ("tune resume", train, lambda c: ["tune=lr_find", "ckpt_path=last"], "tune=lr_find is invalid with ckpt_path=last: the range test starts from the config's fresh weights; drop ckpt_path"),
    # train.py logger=...: a tracker that cannot start (tests/test_tracking.py: one not installed)
    ("logger unknown", train, lambda c: ["logger=comet"], "logger=comet is invalid: choose one of csv, mlflow, tensorboard, tensorboard_csv, wandb"),
    ("mlflow no server", train, lambda c: ["logger=mlflow", "logger.mlflow.tracking_uri=http://127.0.0.1:9"], "logger.mlflow.tracking_uri=http://127.0.0.1:9 is invalid: no MLflow server answers there ("),
    ("mlflow store", train, lambda c: ["logger=mlflow", f"logger.mlflow.tracking_uri=sqlite:///{c.file('a_file', b'')}/mlflow.db"], "logger.mlflow.tracking_uri=sqlite:///{tmp}/a_file/mlflow.db is invalid: {tmp}/a_file cannot be made or written; give a store in a folder of yours, sqlite:///PATH/mlflow.db"),
    ("mlflow folder", train, lambda c: ["logger=mlflow", f"logger.mlflow.tracking_uri=file:{c.tmp}/mlruns"], "logger.mlflow.tracking_uri=file:{tmp}/mlruns is invalid: MLflow no longer keeps runs in plain folders; give sqlite:///PATH/mlflow.db or a server's http(s):// address"),
    ("wandb online", train, lambda c: ["logger=wandb", "logger.wandb.offline=false"], "logger.wandb.offline=false is invalid without a W&B API key: set WANDB_API_KEY or run wandb login"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("entry", "argv", "message"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_bad_input_is_one_line_and_exit_status_2_before_any_work(
    entry, argv, message: str, tiny_mnist: Path, tmp_path: Path, trained_run: TrainedRun, capsys, monkeypatch
) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)  # no W&B key on this machine, whatever its user's
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    context = Context(tiny_mnist, tmp_path, trained_run)
    with pytest.raises(SystemExit) as stop:
        entry(context, *argv(context))
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    expected = message.format(tmp=tmp_path, last=trained_run.last, data=tiny_mnist)
    assert len(lines) == 1 and lines[0].startswith(f"error: {expected}"), lines
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing was trained
