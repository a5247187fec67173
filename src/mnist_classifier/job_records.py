"""Each job of a sweep records its outcome in its run dir (`job.json`); the sweep's report is
written from those records when the sweep ends (mnist_classifier.report)."""

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mnist_classifier.errors import one_line

JOB_RECORD = "job.json"


class JobRecords(Callback):
    """Hydra callback: records each job's outcome in its run dir, and reports the sweep at its end.

    A failed job neither stops the sweep nor the report: it is recorded with its error, and the
    sweep exits non-zero after the report is written and printed.
    """

    def __init__(self) -> None:
        self.started = 0.0

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.perf_counter()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode.name != "MULTIRUN":
            return
        import torch  # the job has imported it already

        record: dict[str, Any] = {
            "wall_s": round(time.perf_counter() - self.started, 3),
            "torch_threads": torch.get_num_threads(),
        }
        try:
            record |= {"status": "finished", "metrics": job_return.return_value}
        except Exception as error:  # return_value raises the job's exception when it failed
            import optuna

            pruned = isinstance(error, optuna.TrialPruned)
            record |= {"status": "pruned" if pruned else "failed", "error": one_line(error)}
            if not pruned:
                record["traceback"] = "".join(traceback.format_exception(error))
        Path(config.hydra.runtime.output_dir, JOB_RECORD).write_text(json.dumps(record, indent=2))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from mnist_classifier.report import write_report  # plots and Optuna: only at a sweep's end

        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = write_report(sweep_dir)
        failed = [job for job in jobs if job.status == "failed"]
        if failed:
            # SystemExit, since Hydra turns a callback's exceptions into warnings and exits 0.
            sys.exit(
                f"error: {len(failed)} of {len(jobs)} jobs failed, the first {failed[0].name}: "
                f"{failed[0].error} (see {sweep_dir / 'report.md'})"
            )


