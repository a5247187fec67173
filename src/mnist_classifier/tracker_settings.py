"""What the trackers' settings follow from, and what is checked of them before a run starts.

A command is one experiment: a single run's experiment is its run dir, a sweep's is its sweep dir
(outputs/multiruns/<date>/<time>, or outputs/studies/<name>), named relative to `outputs/`; each job
is a run named after its dir (`0_model=mlp`). The resolvers `${tracking_experiment:...}` and
`${tracking_run:...}` give those names to conf/logger/, and `${mlflow_artifacts:...}` a local
store's artifact folder. A logger whose package is not installed, an
MLflow store that cannot be written or a server that does not answer, and W&B online without a key
are refused in one line (BadInput). Imports neither torch nor the trackers: a refusal answers fast.
"""

import fcntl
import importlib.util
import netrc
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mnist_classifier.errors import BadInput, unwritable

MLFLOW_LOGGER = "lightning.pytorch.loggers.MLFlowLogger"
# A tracker's Lightning logger -> the package it needs and the extra of ours that installs it.
WANDB_LOGGER = "lightning.pytorch.loggers.WandbLogger"
TRACKER_PACKAGES = {MLFLOW_LOGGER: ("mlflow", "mlflow"), WANDB_LOGGER: ("wandb", "wandb")}
SERVER_TIMEOUT_S = 5
FILE_STORE_OPT_IN = "MLFLOW_ALLOW_FILE_STORE"  # MLflow refuses a folder store without it
TRUE = ("true", "1")  # what MLflow reads as a variable set to true
MLFLOW_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default
LOCAL_STORE = "sqlite:///"  # an MLflow store in a file: sqlite:///PATH/mlflow.db
WANDB_HOST = "https://api.wandb.ai"  # W&B's cloud; WANDB_BASE_URL names a server of one's own


def local_store(tracking_uri: str) -> Path | None:
    """The file of a local MLflow store (sqlite:///PATH); None for a server or another store."""
    return Path(tracking_uri.removeprefix(LOCAL_STORE)) if tracking_uri.startswith(LOCAL_STORE) else None


def is_server(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("http://", "https://"))


def tracking_experiment(output_dir: str, log_dir: str) -> str:
    """The experiment of this command: the sweep dir for a job of a sweep, else the run dir; relative
    to the log dir where it is under it."""
    folder = Path(output_dir)
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        folder = folder.parent
    try:
        return folder.relative_to(log_dir).as_posix()
    except ValueError:
        return folder.as_posix()


def tracking_run(output_dir: str) -> str:
    """A run's name in its experiment: its dir's name (a sweep job's number and overrides)."""
    return Path(output_dir).name


OmegaConf.register_new_resolver("tracking_experiment", tracking_experiment, replace=True)
OmegaConf.register_new_resolver("tracking_run", tracking_run, replace=True)


def mlflow_artifacts(tracking_uri: str) -> str | None:
    """Where a new experiment of a local MLflow store keeps its files: `mlartifacts/` beside the
    store; None (the server's choice) for a server."""
    store = local_store(tracking_uri)
    return str(store.parent / "mlartifacts") if store else None


OmegaConf.register_new_resolver("mlflow_artifacts", mlflow_artifacts, replace=True)


@contextmanager
def local_stores_locked(cfg: DictConfig) -> Iterator[None]:
    """Hold the lock of each local MLflow store the run logs to (a file beside it) while the loggers
    are built and open their runs: a store's first use makes its tables, and a command's first run
    makes its experiment, which the jobs of a parallel sweep would otherwise race to make."""
    with ExitStack() as held:
        for logger in (cfg.get("logger") or {}).values():
            if logger is None or logger.get("_target_") != MLFLOW_LOGGER:
                continue
            if store := local_store(str(logger.tracking_uri)):
                store.parent.mkdir(parents=True, exist_ok=True)
                lock = held.enter_context(open(f"{store}.lock", "a"))
                fcntl.flock(lock, fcntl.LOCK_EX)  # released as the file closes
        yield


def check_loggers(cfg: DictConfig) -> None:
    """Raise BadInput for a logger that cannot start: its package missing, its store or server out of
    reach, or W&B online without a key."""
    for name, logger in (cfg.get("logger") or {}).items():
        if logger is None:
            continue
        target = logger.get("_target_")
        if target in TRACKER_PACKAGES:
            package, extra = TRACKER_PACKAGES[target]
            if importlib.util.find_spec(package) is None:
                raise BadInput(
                    f"logger={name} is invalid: {package} is not installed; pip install -e '.[{extra}]'"
                )
        if target == MLFLOW_LOGGER:
            check_mlflow_store(f"logger.{name}.tracking_uri", str(logger.tracking_uri))
        if target == WANDB_LOGGER and not logger.get("offline", False):
            check_wandb_key(f"logger.{name}.offline")


def check_mlflow_store(key: str, uri: str) -> None:
    """An MLflow tracking URI: a server that answers its health check, or a SQLite file that can be
    made; a plain folder only where MLflow is told to allow one; other stores (a database server,
    Databricks) are MLflow's to reach."""
    if is_server(uri):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=SERVER_TIMEOUT_S):
                return
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise BadInput(
                f"{key}={uri} is invalid: no MLflow server answers there ({reason}); start one "
                "(mlflow server) or give a local store, sqlite:///PATH/mlflow.db"
            ) from error
    elif store := local_store(uri):
        if unwritable(store.parent):
            raise BadInput(
                f"{key}={uri} is invalid: {store.parent} cannot be made or written; give a store in a "
                "folder of yours, sqlite:///PATH/mlflow.db"
            )
    elif uri.startswith(("file:", "/", ".")) and os.environ.get(FILE_STORE_OPT_IN, "").lower() not in (
        "true",
        "1",
    ):
        raise BadInput(
            f"{key}={uri} is invalid: MLflow no longer keeps runs in plain folders; give "
            "sqlite:///PATH/mlflow.db or a server's http(s):// address"
        )


def check_wandb_key(key: str) -> None:
    """W&B online needs an API key: WANDB_API_KEY, or the one `wandb login` keeps in ~/.netrc for the
    W&B host (its cloud, or the server WANDB_BASE_URL names)."""
    if os.environ.get("WANDB_API_KEY"):
        return
    host = urllib.parse.urlparse(os.environ.get("WANDB_BASE_URL", WANDB_HOST)).hostname
    try:
        if netrc.netrc(os.environ.get("NETRC")).authenticators(host):
            return
    except (OSError, netrc.NetrcParseError):  # no such file, or one that cannot be read: no key there
        pass
    raise BadInput(
        f"{key}=false is invalid without a W&B API key: set WANDB_API_KEY or run wandb login; or "
        "keep the run offline (the default) and upload it later with wandb sync"
    )


def mlflow_link(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The address of a run's page: on its server, or where `mlflow ui` serves a local store."""
    base = tracking_uri.rstrip("/") if is_server(tracking_uri) else MLFLOW_UI
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"
