"""Bad input, across every entry point: one line `error: <what> is invalid: ...`, exit status 2,
before any work; train.py's before Hydra makes a run dir. In this process (each entry point's own
checks and main); test_train.py and test_eval.py run one case of each command as a process."""

import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from mnist_classifier import report
from mnist_classifier.checkpoint_files import RECORD
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
    sockets: list[socket.socket]

    @property
    def a_file(self) -> Path:
        """A regular file, where a folder is wanted."""
        return self.file("a_file", b"")

    def port_in_use(self) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        self.sockets.append(listener)
        return listener.getsockname()[1]

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
    """train.py in this process, as its script runs it: the checks of its command line, then, for a
    command line they let through, the run in the run dir that Hydra makes first (under paths.log_dir,
    which the test then finds made)."""
    base = [f"data.data_dir={context.data}", "data.download=false", "data.val_size=40"]
    argv = (*base, f"paths.log_dir={context.tmp / 'outputs'}", *argv)
    with failure_policy():
        preflight(list(argv))
    flags, overrides = command_line_overrides(list(argv))
    run_dir = context.tmp / "outputs" / "run"
    run_dir.mkdir(parents=True)
    with failure_policy():
        if not flags & {"-m", "--multirun"}:
            run(compose(overrides, output_dir=run_dir))


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


def truncated_images(context: Context) -> list[str]:
    data_dir = copy_dataset(context.data, context.tmp / "data")
    images = data_dir / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-10])
    return [f"data.data_dir={data_dir}"]


def without_record(checkpoint: dict) -> None:
    del checkpoint[RECORD]


def own_net(checkpoint: dict) -> None:
    checkpoint[RECORD]["model"]["_target_"] = "mynets.TinyNet"


def fashion_record(checkpoint: dict) -> None:
    checkpoint[RECORD]["dataset"] = "fashion_mnist"


CASES: list[tuple[str, Callable, Callable[[Context], list[str]], str]] = [
    # train.py: values
    ("seed", train, lambda c: ["seed=abc"], "seed=abc is invalid: an integer >= 0 and <= 4294967295"),
    ("lr", train, lambda c: ["optimizer.lr=-0.1"], "optimizer.lr=-0.1 is invalid: a number > 0"),
    ("lr nan", train, lambda c: ["optimizer.lr=nan"], "optimizer.lr=nan is invalid: a number > 0"),
    ("lr inf", train, lambda c: ["optimizer.lr=inf"], "optimizer.lr=inf is invalid: a number > 0"),
    ("momentum", train, lambda c: ["optimizer.momentum=-1"], "optimizer.momentum=-1 is invalid: a number >= 0 and < 1"),
    ("weight_decay", train, lambda c: ["optimizer.weight_decay=-1"], "optimizer.weight_decay=-1 is invalid: a number >= 0"),
    ("nesterov", train, lambda c: ["optimizer.nesterov=maybe"], "optimizer.nesterov=maybe is invalid: true or false"),
    ("label_smoothing", train, lambda c: ["loss=label_smoothing", "loss.label_smoothing=1"], "loss.label_smoothing=1 is invalid: a number >= 0 and < 1"),
    ("step_size", train, lambda c: ["scheduler=step", "scheduler.scheduler.step_size=0"], "scheduler.scheduler.step_size=0 is invalid: an integer >= 1 (epochs between steps)"),
    ("gamma", train, lambda c: ["scheduler=step", "scheduler.scheduler.gamma=0"], "scheduler.scheduler.gamma=0 is invalid: a number > 0"),
    ("T_max", train, lambda c: ["scheduler=cosine", "scheduler.scheduler.T_max=0"], "scheduler.scheduler.T_max=0 is invalid: an integer >= 1"),
    ("pct_start", train, lambda c: ["scheduler.scheduler.pct_start=1"], "scheduler.scheduler.pct_start=1 is invalid: a number > 0 and < 1"),
    ("max_epochs", train, lambda c: ["trainer.max_epochs=abc"], "trainer.max_epochs=abc is invalid: an integer >= 1, or -1"),
    ("batch_size", train, lambda c: ["data.batch_size=1.5"], "data.batch_size=1.5 is invalid: an integer >= 1"),
    ("eval_batch_size", train, lambda c: ["data.eval_batch_size=0"], "data.eval_batch_size=0 is invalid: an integer >= 1"),
    ("val_size", train, lambda c: ["data.val_size=0"], "data.val_size=0 is invalid: an integer >= 1"),
    ("split_seed", train, lambda c: ["data.split_seed=-1"], "data.split_seed=-1 is invalid: an integer >= 0"),
    ("shuffle_seed", train, lambda c: ["data.shuffle_seed=abc"], "data.shuffle_seed=abc is invalid: an integer >= 0"),
    ("mean", train, lambda c: ["data.mean=nan"], "data.mean=nan is invalid: a number, or null"),
    ("std", train, lambda c: ["data.std=0"], "data.std=0 is invalid: a number > 0, or null"),
    ("download", train, lambda c: ["data.download=maybe"], "data.download=maybe is invalid: true or false"),
    ("image_size", train, lambda c: ["data.image_size=0"], "data.image_size=0 is invalid: an integer >= 1"),
    ("resize", train, lambda c: ["data.resize=nearest"], "data.resize=nearest is invalid: one of bilinear, pad"),
    ("hidden_sizes", train, lambda c: ["model.hidden_sizes=[120,0]"], "model.hidden_sizes=[120,0] is invalid: a list"),
    ("lenet layers", train, lambda c: ["model.hidden_sizes=[120]"], "model.hidden_sizes=[120] is invalid for LeNet: give exactly 2 sizes"),
    ("rotation", train, lambda c: ["augment=affine", "augment.rotation=-5"], "augment.rotation=-5 is invalid: a number >= 0 and <= 180"),
    ("scale", train, lambda c: ["augment.scale=1"], "augment.scale=1 is invalid: a number >= 0 and <= 0.99"),
    ("translate", train, lambda c: ["augment.translate=inf"], "augment.translate=inf is invalid: a number >= 0 and <= 1"),
    ("shear", train, lambda c: ["augment.shear=90"], "augment.shear=90 is invalid: a number >= 0 and <= 60"),
    ("hflip", train, lambda c: ["augment=fashion", "augment.hflip=-1"], "augment.hflip=-1 is invalid: a number >= 0 and <= 1"),
    ("elastic", train, lambda c: ["augment=elastic", "augment.elastic=-1"], "augment.elastic=-1 is invalid: a number >= 0"),
    ("elastic_cells", train, lambda c: ["augment=elastic", "augment.elastic_cells=1"], "augment.elastic_cells=1 is invalid: an integer >= 2 and <= 64"),
    ("probability", train, lambda c: ["augment=affine", "augment.p=1.5"], "augment.p=1.5 is invalid: a number >= 0 and <= 1"),
    ("channels_last", train, lambda c: ["classifier.channels_last=1"], "classifier.channels_last=1 is invalid: true or false"),
    ("graph+compile", train, lambda c: ["logger.tensorboard.log_graph=true", "classifier.compile=true"], "logger.tensorboard.log_graph=true is invalid with classifier.compile=true"),
    ("ema start", train, lambda c: ["callbacks=ema", "callbacks.ema.start_epoch=10", "trainer.max_epochs=10"], "callbacks.ema.start_epoch=10 is invalid with trainer.max_epochs=10: the average would never start; give 0 to 9"),
    ("ema decay", train, lambda c: ["callbacks=ema", "callbacks.ema.decay=1"], "callbacks.ema.decay=1 is invalid: a number > 0 and < 1"),
    ("patience", train, lambda c: ["callbacks=early_stopping", "callbacks.early_stopping.patience=0"], "callbacks.early_stopping.patience=0 is invalid: an integer >= 1"),
    ("last every", train, lambda c: ["callbacks.last_checkpoint.every_n_train_steps=0"], "callbacks.last_checkpoint.every_n_train_steps=0 is invalid: an integer >= 1, or null"),
    ("misclassified", train, lambda c: ["callbacks.dashboards.misclassified_digits=-1"], "callbacks.dashboards.misclassified_digits=-1 is invalid: an integer >= 0"),
    ("histograms", train, lambda c: ["callbacks.dashboards.histograms_every_n_steps=-1"], "callbacks.dashboards.histograms_every_n_steps=-1 is invalid: an integer >= 0"),
    # train.py: the Trainer's arguments, passed through to Lightning
    ("accelerator", train, lambda c: ["trainer.accelerator=tpu"], "trainer.accelerator=tpu is invalid: one of auto, cpu, gpu, cuda, mps"),
    ("gpu", train, lambda c: ["trainer.accelerator=gpu"], "trainer.accelerator=gpu is invalid: this machine has no CUDA GPU"),
    ("mps", train, lambda c: ["trainer.accelerator=mps"], "trainer.accelerator=mps is invalid: this machine has no Apple GPU"),
    ("devices", train, lambda c: ["trainer.devices=0"], "trainer.devices=0 is invalid: an integer >= 1, or one of auto, -1 (-1: every device)"),
    ("devices text", train, lambda c: ["trainer.devices=all"], "trainer.devices=all is invalid: an integer >= 1, or one of auto, -1"),
    ("num_nodes", train, lambda c: ["+trainer.num_nodes=0"], "trainer.num_nodes=0 is invalid: an integer >= 1"),
    ("strategy", train, lambda c: ["+trainer.strategy=fsdp"], "trainer.strategy=fsdp is invalid: one of auto, ddp (ddp: a process per device"),
    ("precision", train, lambda c: ["trainer.precision=8"], "trainer.precision=8 is invalid: one of 32-true, 32, 16-mixed, bf16-mixed (16-true, bf16-true and 64-true cannot train here"),
    ("precision 64", train, lambda c: ["trainer.precision=64"], "trainer.precision=64 is invalid: one of 32-true, 32, 16-mixed, bf16-mixed"),
    ("precision 16-true", train, lambda c: ["trainer.precision=16-true"], "trainer.precision=16-true is invalid: one of 32-true"),
    ("log_every_n_steps", train, lambda c: ["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps=0 is invalid: an integer >= 1"),
    ("deterministic", train, lambda c: ["trainer.deterministic=maybe"], "trainer.deterministic=maybe is invalid: true or false, or warn"),
    ("accumulate", train, lambda c: ["+trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches=0 is invalid: an integer >= 1"),
    ("clip", train, lambda c: ["+trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1 is invalid: a number >= 0, or null"),
    ("clip inf", train, lambda c: ["+trainer.gradient_clip_val=inf"], "trainer.gradient_clip_val=inf is invalid: a number >= 0, or null"),
    ("limit_train", train, lambda c: ["+trainer.limit_train_batches=-1"], "trainer.limit_train_batches=-1 is invalid: a number >= 0"),
    ("limit_val", train, lambda c: ["+trainer.limit_val_batches=nan"], "trainer.limit_val_batches=nan is invalid: a number >= 0"),
    ("limit_test", train, lambda c: ["+trainer.limit_test_batches=-0.5"], "trainer.limit_test_batches=-0.5 is invalid: a number >= 0"),
    ("overfit", train, lambda c: ["+trainer.overfit_batches=-1"], "trainer.overfit_batches=-1 is invalid: a number >= 0"),
    ("fast_dev_run", train, lambda c: ["+trainer.fast_dev_run=-1"], "trainer.fast_dev_run=-1 is invalid: true or false, or an integer >= 0"),
    ("trainer argument", train, lambda c: ["+trainer.foo=1"], "trainer.foo is invalid: lightning.pytorch.Trainer takes no argument foo; it takes accelerator, strategy"),
    ("trainer option", train, lambda c: ["trainer=tpu"], "trainer=tpu is invalid: choose one of cpu, ddp, default, gpu"),
    # train.py: options and keys
    ("unknown option", train, lambda c: ["optimizer=adagrad"], "optimizer=adagrad is invalid: choose one of adam, adamw, nesterov, rmsprop, sgd"),
    ("unknown model", train, lambda c: ["model=cnn"], "model=cnn is invalid: choose one of lenet, mlp"),
    ("unknown loss", train, lambda c: ["loss=hinge"], "loss=hinge is invalid: choose one of cross_entropy, label_smoothing, mse, nll"),
    ("unknown scheduler", train, lambda c: ["scheduler=exponential"], "scheduler=exponential is invalid: choose one of cosine, none, onecycle, step"),
    ("unknown augment", train, lambda c: ["augment=warp"], "augment=warp is invalid: choose one of affine, elastic, fashion, none"),
    ("unknown callbacks", train, lambda c: ["callbacks=swa"], "callbacks=swa is invalid: choose one of default, early_stopping, ema"),
    ("unknown data", train, lambda c: ["data=cifar10"], "data=cifar10 is invalid: choose one of fashion_mnist, mnist"),
    ("unknown debug", train, lambda c: ["debug=slow"], "debug=slow is invalid: choose one of fast, overfit, profile"),
    ("unknown experiment", train, lambda c: ["experiment=best"], "experiment=best is invalid: choose one of fashion_best, lenet5_paper, lenet_best, lenet_fast, mlp_best"),
    ("selection metric", train, lambda c: ["selection.monitor=test/acc"], "selection.monitor=test/acc is invalid: one of val/acc, val/loss, train/acc, train/loss_epoch"),
    ("selection mode", train, lambda c: ["selection.mode=highest"], "selection.mode=highest is invalid: one of max, min"),
    ("data set field", train, lambda c: ["~data.dataset.classes"], "data.dataset.classes is invalid: it is missing; give a list of two or more strings"),
    ("classes", train, lambda c: ["data.dataset.classes=[a,b,c]"], "{data}/MNIST/raw/train-labels-idx1-ubyte is invalid: its labels run 0 to 9, and data.dataset.classes names 3 classes"),
    ("unknown target", train, lambda c: ["model._target_=mynets.Net"], "model._target_=mynets.Net is invalid: it cannot be imported"),
    ("unknown argument", train, lambda c: ["+model.depth=3"], "model.depth is invalid: mnist_classifier.models.LeNet takes no argument depth"),
    ("unknown key", train, lambda c: ["optimizer.lrr=3"], "optimizer.lrr=3 is invalid: optimizer has no key 'lrr'"),
    ("list without -m", train, lambda c: ["optimizer.lr=0.1,0.01"], "optimizer.lr=0.1,0.01 is invalid without -m"),
    ("study without -m", train, lambda c: ["hparams_search=optuna"], "hparams_search=optuna is invalid without -m"),
    # train.py: the data, the checkpoint and the net, from files, before Hydra makes the run dir
    ("lenet size", train, lambda c: ["data.image_size=7"], "data.image_size=7 is invalid for LeNet: it needs at least 16"),
    ("pad size", train, lambda c: ["data.image_size=20", "data.resize=pad"], "data.image_size=20 is invalid with data.resize=pad"),
    ("split", train, lambda c: [f"data.val_size={TINY_TRAIN}"], f"data.val_size={TINY_TRAIN} is invalid: it must be smaller than the {TINY_TRAIN} training images"),
    ("no data", train, lambda c: [f"data.data_dir={c.tmp / 'none'}"], "data.data_dir={tmp}/none is invalid: mnist is not in {tmp}/none/MNIST/raw and download is off"),
    ("no fashion", train, lambda c: ["data=fashion_mnist", f"data.data_dir={c.tmp}"], "data.data_dir={tmp} is invalid: fashion_mnist is not in {tmp}/FashionMNIST/raw"),
    ("no download", train, lambda c: [f"data.data_dir={c.a_file}/data", "data.download=true"], "data.data_dir={tmp}/a_file/data is invalid: mnist is not in {tmp}/a_file/data/MNIST/raw and it cannot be downloaded there: {tmp}/a_file is a file, not a folder"),
    ("corrupt data", train, truncated_labels, "{tmp}/data/MNIST/raw/train-labels-idx1-ubyte is invalid: it is truncated"),
    ("corrupt images", train, truncated_images, "{tmp}/data/MNIST/raw/train-images-idx3-ubyte is invalid: it is truncated"),
    ("no checkpoint", train, lambda c: [f"ckpt_path={c.tmp / 'none.ckpt'}"], "ckpt_path={tmp}/none.ckpt is invalid: no such file"),
    ("not a checkpoint", train, lambda c: [f"ckpt_path={c.file('notes.ckpt', b'notes')}"], "ckpt_path={tmp}/notes.ckpt is invalid: not a checkpoint"),
    ("nothing to resume", train, lambda c: ["ckpt_path=last"], "ckpt_path=last is invalid here: no run under {tmp}/outputs"),
    ("run dir", train, lambda c: [f"hydra.run.dir={c.a_file}/run"], "hydra.run.dir={tmp}/a_file/run is invalid: {tmp}/a_file is a file, not a folder; give a folder that can be made and written"),
    ("log dir", train, lambda c: [f"paths.log_dir={c.a_file}/outputs"], "paths.log_dir={tmp}/a_file/outputs is invalid: {tmp}/a_file is a file, not a folder"),
    ("sweep dir", train, lambda c: ["-m", "optimizer.lr=0.1,0.01", f"hydra.sweep.dir={c.a_file}/sweep"], "hydra.sweep.dir={tmp}/a_file/sweep is invalid: {tmp}/a_file is a file, not a folder"),
    # sweeps: every swept value is checked before the first job
    ("swept lr", train, lambda c: ["-m", "optimizer.lr=0.1,-1"], "optimizer.lr=-1 is invalid: a number > 0"),
    ("swept option", train, lambda c: ["-m", "model=lenet,cnn"], "model=cnn is invalid: choose one of lenet, mlp"),
    ("swept size", train, lambda c: ["-m", "data.image_size=32,8"], "data.image_size=8 is invalid for LeNet: it needs at least 16"),
    ("grid interval", train, lambda c: ["-m", "optimizer.lr=interval(0.01,0.1)"], "optimizer.lr=interval(0.01,0.1) is invalid: a grid sweeps lists"),
    ("unknown study", train, lambda c: ["-m", "hparams_search=grid"], "hparams_search=grid is invalid: choose one of default_recipe, fashion_best"),
    ("n_trials", train, lambda c: ["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials=0 is invalid: an integer >= 1"),
    ("study n_jobs", train, lambda c: ["-m", "hparams_search=optuna", "hydra.sweeper.n_jobs=0"], "hydra.sweeper.n_jobs=0 is invalid: an integer >= 1"),
    ("launcher n_jobs", train, lambda c: ["-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs=0 is invalid: an integer >= 1"),
    # train.py tune=lr_find: its settings, and what Lightning's range test cannot run with
    ("tune rates", train, lambda c: ["tune=lr_find", "tune.max_lr=1e-6"], "tune.max_lr=1e-06 is invalid with tune.min_lr=1e-05: the test raises the rate from min_lr to max_lr; give a larger max_lr"),
    ("tune min_lr", train, lambda c: ["tune=lr_find", "tune.min_lr=0"], "tune.min_lr=0 is invalid: a number > 0"),
    ("tune steps", train, lambda c: ["tune=lr_find", "tune.num_training=10"], "tune.num_training=10 is invalid: an integer >= 20"),
    ("tune mode", train, lambda c: ["tune=lr_find", "tune.mode=cubic"], "tune.mode=cubic is invalid: one of exponential, linear"),
    ("tune threshold", train, lambda c: ["tune=lr_find", "tune.early_stop_threshold=1"], "tune.early_stop_threshold=1 is invalid: a number > 1, or null"),
    ("tune with -m", train, lambda c: ["-m", "tune=lr_find"], "tune=lr_find is invalid with -m: the range test is one run; run it once without -m"),
    ("tune ddp", train, lambda c: ["tune=lr_find", "trainer=ddp"], "tune=lr_find is invalid with trainer.strategy=ddp: Lightning's range test runs in one process on one device; use trainer=default"),
    ("tune devices", train, lambda c: ["tune=lr_find", "trainer.devices=2"], "tune=lr_find is invalid with trainer.devices=2: Lightning's range test runs in one process on one device; give 1"),
    ("tune nodes", train, lambda c: ["tune=lr_find", "+trainer.num_nodes=2"], "tune=lr_find is invalid with trainer.num_nodes=2: Lightning's range test runs in one process on one device; give 1"),
    ("tune fast_dev_run", train, lambda c: ["tune=lr_find", "debug=fast"], "tune=lr_find is invalid with trainer.fast_dev_run=5: Lightning skips the range test in a fast_dev_run; drop debug=fast"),
    ("tune resume", train, lambda c: ["tune=lr_find", "ckpt_path=last"], "tune=lr_find is invalid with ckpt_path=last: the range test starts from the config's fresh weights; drop ckpt_path"),
    # train.py logger=...: a tracker that cannot start (tests/test_tracking.py: one not installed)
    ("logger unknown", train, lambda c: ["logger=comet"], "logger=comet is invalid: choose one of csv, mlflow, tensorboard, tensorboard_csv, wandb"),
    ("log_graph", train, lambda c: ["logger.tensorboard.log_graph=maybe"], "logger.tensorboard.log_graph=maybe is invalid: true or false"),
    ("mlflow no server", train, lambda c: ["logger=mlflow", "logger.mlflow.tracking_uri=http://127.0.0.1:9"], "logger.mlflow.tracking_uri=http://127.0.0.1:9 is invalid: no MLflow server answers there ("),
    ("mlflow store", train, lambda c: ["logger=mlflow", f"logger.mlflow.tracking_uri=sqlite:///{c.a_file}/mlflow.db"], "logger.mlflow.tracking_uri=sqlite:///{tmp}/a_file/mlflow.db is invalid: {tmp}/a_file cannot be made or written; give a store in a folder of yours, sqlite:///PATH/mlflow.db"),
    ("mlflow folder", train, lambda c: ["logger=mlflow", f"logger.mlflow.tracking_uri=file:{c.tmp}/mlruns"], "logger.mlflow.tracking_uri=file:{tmp}/mlruns is invalid: MLflow no longer keeps runs in plain folders; give sqlite:///PATH/mlflow.db or a server's http(s):// address"),
    ("wandb online", train, lambda c: ["logger=wandb", "logger.wandb.offline=false"], "logger.wandb.offline=false is invalid without a W&B API key: set WANDB_API_KEY or run wandb login"),
    ("other model", train, lambda c: ["model=mlp", f"ckpt_path={c.run.last}"], "ckpt_path={last} is invalid: it holds a different model than this config's: it has no net.layers.1.bias"),
    # eval.py
    ("eval usage", command("eval.py"), lambda c: [], "eval.py: the following arguments are required: CKPT"),
    ("eval option", command("eval.py"), lambda c: [str(c.run.best), "--batch", "8"], "eval.py: unrecognized arguments: --batch 8 (see eval.py --help)"),
    ("eval missing", command("eval.py"), lambda c: [str(c.tmp / "none.ckpt")], "{tmp}/none.ckpt is invalid: no such checkpoint file"),
    ("eval not a checkpoint", command("eval.py"), lambda c: [str(c.file("notes.ckpt", b"notes"))], "{tmp}/notes.ckpt is invalid: not a checkpoint"),
    ("eval no record", command("eval.py"), lambda c: [str(c.checkpoint_with("no_record.ckpt", without_record))], "{tmp}/no_record.ckpt is invalid: it has no inference record, so it was not written by train.py of this project"),
    ("eval untrusted", command("eval.py"), lambda c: [str(c.checkpoint_with("own.ckpt", own_net))], "{tmp}/own.ckpt is invalid: its net names _target_ mynets.TinyNet, outside the modules a checkpoint may name (mnist_classifier.models, torch.nn); if you trust mynets, give --trust mynets or set MNIST_CLASSIFIER_TRUST=mynets"),
    ("eval trust", command("eval.py"), lambda c: [str(c.run.best), "--trust"], "eval.py: argument --trust: expected one argument"),
    ("eval ensemble", command("eval.py"), lambda c: [str(c.run.best), str(c.checkpoint_with("fashion.ckpt", fashion_record))], "{tmp}/fashion.ckpt is invalid in this ensemble: its data set is fashion_mnist, "),
    ("eval data", command("eval.py"), lambda c: [str(c.run.best), "--data-dir", str(c.tmp)], "{tmp}/MNIST/raw is invalid: it lacks t10k-images-idx3-ubyte"),
    ("eval images", command("eval.py"), lambda c: [str(c.run.best), "--images", str(c.tmp / "none")], "{tmp}/none is invalid: there is no such folder"),
    ("eval device", command("eval.py"), lambda c: [str(c.run.best), "--device", "banana"], "--device banana is invalid: give cpu, cuda, cuda:N (the N-th GPU) or mps"),
    ("eval cuda", command("eval.py"), lambda c: [str(c.run.best), "--device", "cuda"], "--device cuda is invalid: this machine has no CUDA GPU"),
    ("eval cuda:99", command("eval.py"), lambda c: [str(c.run.best), "--device", "cuda:99"], "--device cuda:99 is invalid: this machine has "),
    # predict.py
    ("predict usage", predict, lambda c: [str(c.run.best)], "predict.py: the following arguments are required: INPUT"),
    ("predict missing checkpoint", predict, lambda c: [str(c.tmp / "none.ckpt"), str(c.tmp)], "{tmp}/none.ckpt is invalid: no such checkpoint file"),
    ("predict text", predict, lambda c: [str(c.run.best), str(c.file("notes.png", b"not an image"))], "{tmp}/notes.png is invalid: it is not an image"),
    ("predict missing", predict, lambda c: [str(c.run.best), str(c.tmp / "none.png")], "{tmp}/none.png is invalid: there is no such file"),
    ("predict glob", predict, lambda c: [str(c.run.best), str(c.tmp / "*.webp")], "{tmp}/*.webp is invalid: it matches no files"),
    ("predict number", predict, lambda c: [str(c.run.best), "--number=yes", str(c.tmp)], "predict.py: argument --number: ignored explicit argument 'yes'"),
    ("predict top", predict, lambda c: [str(c.run.best), "--top", "11", str(c.tmp)], "--top 11 is invalid: give 1 to 10, its classes"),
    ("predict top text", predict, lambda c: [str(c.run.best), "--top", "nan", str(c.tmp)], "predict.py: argument --top: invalid int value: 'nan'"),
    ("predict format", predict, lambda c: [str(c.run.best), "--format", "xml", str(c.tmp)], "predict.py: argument --format: invalid choice: 'xml'"),
    ("predict save file", predict, lambda c: [str(c.run.best), "--save-inputs", str(c.a_file), str(c.tmp)], "--save-inputs {tmp}/a_file is invalid: {tmp}/a_file is a file, not a folder"),
    ("predict save under file", predict, lambda c: [str(c.run.best), "--save-inputs", f"{c.a_file}/seen", str(c.tmp)], "--save-inputs {tmp}/a_file/seen is invalid: {tmp}/a_file is a file, not a folder; give a folder that can be made and written"),
    ("predict device", predict, lambda c: [str(c.run.best), "--device", "banana", str(c.tmp)], "--device banana is invalid: give cpu, cuda, cuda:N (the N-th GPU) or mps"),
    ("predict cuda", predict, lambda c: [str(c.run.best), "--device", "cuda", str(c.tmp)], "--device cuda is invalid: this machine has no CUDA GPU"),
    ("predict cuda:99", predict, lambda c: [str(c.run.best), "--device", "cuda:99", str(c.tmp)], "--device cuda:99 is invalid: this machine has "),
    ("predict untrusted", predict, lambda c: [str(c.checkpoint_with("own.ckpt", own_net)), str(c.tmp)], "{tmp}/own.ckpt is invalid: its net names _target_ mynets.TinyNet"),
    # export.py
    ("export usage", command("export.py"), lambda c: [], "export.py: the following arguments are required: CKPT"),
    ("export missing", command("export.py"), lambda c: [str(c.tmp / "none.ckpt")], "{tmp}/none.ckpt is invalid: no such checkpoint file"),
    ("export format", command("export.py"), lambda c: [str(c.run.best), "--formats", "pdf"], "export.py: argument --formats: invalid choice: 'pdf'"),
    ("export file", command("export.py"), lambda c: [str(c.file("notes.ckpt", b"notes"))], "{tmp}/notes.ckpt is invalid: not a checkpoint"),
    ("export out file", command("export.py"), lambda c: [str(c.run.best), "--out", str(c.a_file)], "--out {tmp}/a_file is invalid: {tmp}/a_file is a file, not a folder"),
    ("export out under file", command("export.py"), lambda c: [str(c.run.best), "--out", f"{c.a_file}/export"], "--out {tmp}/a_file/export is invalid: {tmp}/a_file is a file, not a folder; give a folder that can be made and written"),
    ("export untrusted", command("export.py"), lambda c: [str(c.checkpoint_with("own.ckpt", own_net)), "--out", str(c.tmp / "export")], "{tmp}/own.ckpt is invalid: its net names _target_ mynets.TinyNet"),
    ("export trust", command("export.py"), lambda c: [str(c.run.best), "--trust"], "export.py: argument --trust: expected one argument"),
    # serve.py: refused before it listens
    ("serve usage", command("serve.py"), lambda c: [], "serve.py: the following arguments are required: CKPT"),
    ("serve missing", command("serve.py"), lambda c: [str(c.tmp / "none.ckpt")], "{tmp}/none.ckpt is invalid: no such checkpoint file"),
    ("serve file", command("serve.py"), lambda c: [str(c.file("notes.ckpt", b"notes")), "--port", "0"], "{tmp}/notes.ckpt is invalid: not a checkpoint"),
    ("serve upload nan", command("serve.py"), lambda c: [str(c.run.best), "--max-upload-mb", "nan"], "--max-upload-mb nan is invalid: give a number of MB > 0"),
    ("serve upload inf", command("serve.py"), lambda c: [str(c.run.best), "--max-upload-mb", "inf"], "--max-upload-mb inf is invalid: give a number of MB > 0"),
    ("serve upload 0", command("serve.py"), lambda c: [str(c.run.best), "--max-upload-mb", "0"], "--max-upload-mb 0.0 is invalid: give a number of MB > 0"),
    ("serve upload -1", command("serve.py"), lambda c: [str(c.run.best), "--max-upload-mb=-1"], "--max-upload-mb -1.0 is invalid: give a number of MB > 0"),
    ("serve upload text", command("serve.py"), lambda c: [str(c.run.best), "--max-upload-mb", "lots"], "serve.py: argument --max-upload-mb: invalid float value: 'lots'"),
    ("serve port", command("serve.py"), lambda c: [str(c.run.best), "--port", "70000"], "--port 70000 is invalid: give 0 to 65535"),
    ("serve port text", command("serve.py"), lambda c: [str(c.run.best), "--port", "http"], "serve.py: argument --port: invalid int value: 'http'"),
    ("serve port in use", command("serve.py"), lambda c: [str(c.run.best), "--port", str(c.port_in_use())], "--port {port} is invalid: it is in use; give another port, or 0 for a free one"),
    ("serve host", command("serve.py"), lambda c: [str(c.run.best), "--host", "192.0.2.1", "--port", "0"], "--host 192.0.2.1 is invalid: "),
    ("serve untrusted", command("serve.py"), lambda c: [str(c.checkpoint_with("own.ckpt", own_net)), "--port", "0"], "{tmp}/own.ckpt is invalid: its net names _target_ mynets.TinyNet"),
    ("serve trust", command("serve.py"), lambda c: [str(c.run.best), "--trust"], "serve.py: argument --trust: expected one argument"),
    # the sweep report
    ("report", lambda c, *argv: report.main(list(argv)), lambda c: [str(c.tmp)], "{tmp} is invalid: it holds no sweep (no multirun.yaml"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("entry", "argv", "message"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_bad_input_is_one_line_and_exit_status_2_before_any_work(
    entry, argv, message: str, tiny_mnist: Path, tmp_path: Path, trained_run: TrainedRun, capsys, monkeypatch
) -> None:
    if "no CUDA GPU" in message and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)  # no W&B key on this machine, whatever its user's
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    context = Context(tiny_mnist, tmp_path, trained_run, [])
    with pytest.raises(SystemExit) as stop:
        entry(context, *argv(context))
    port = context.sockets[0].getsockname()[1] if context.sockets else None
    for listener in context.sockets:
        listener.close()
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    expected = message.format(tmp=tmp_path, last=trained_run.last, data=tiny_mnist, port=port)
    assert len(lines) == 1 and lines[0].startswith(f"error: {expected}"), lines
    if entry is train:  # refused before Hydra makes the run dir: nothing under paths.log_dir
        assert not (tmp_path / "outputs").exists()
    assert not (tmp_path / "outputs" / "run" / "checkpoints").exists()  # nothing was trained
