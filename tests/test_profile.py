"""train.py debug=profile, run as a user runs it: the profiler's table of each stage in train.log and
its Chrome trace in the run dir, checked against the net the run trained and the schedule it was
given."""

import json
import re
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from .conftest import TINY_TEST, TINY_TRAIN, run_script

VAL_SIZE, BATCH_SIZE = 40, 8
# More training batches than the schedule's steps, so that the schedule, not the data, ends the
# recording; and a test stage long enough to record too.
TINY_PROFILE = [
    f"data.val_size={VAL_SIZE}",
    f"data.batch_size={BATCH_SIZE}",
    f"data.eval_batch_size={BATCH_SIZE}",
]
TRAINING_BATCHES = (TINY_TRAIN - VAL_SIZE) // BATCH_SIZE
TEST_BATCHES = TINY_TEST // BATCH_SIZE
# What Lightning's profiler names a step of each stage on one device.
STEP = "[pl][profile][Strategy]SingleDeviceStrategy.{stage}_step"


def table(log: str, stage: str) -> dict[str, int]:
    """The rows of a stage's profiler table in the log: each name with its number of calls."""
    title = f"{stage.upper()} Profiler Report\n"
    assert title in log, f"no {stage} table in train.log"
    report = log.split(title, 1)[1].split("Self CPU time total", 1)[0]
    rows = [re.split(r"\s{2,}", line.strip()) for line in report.splitlines() if line.strip()]
    # the header, rules and title aside: a row is a name and six numbers
    return {row[0]: int(row[6]) for row in rows if len(row) == 7 and row[6].isdigit()}


def trace_events(run_dir: Path, stage: str) -> list[dict]:
    """The events of the one Chrome trace a stage wrote, of its recorded steps."""
    traces = list(run_dir.glob(f"{stage}-*.pt.trace.json"))
    assert len(traces) == 1, f"{stage} traces in the run dir: {[trace.name for trace in traces]}"
    (trace,) = traces
    return json.loads(trace.read_text())["traceEvents"]


def net_ops(cfg: DictConfig) -> set[str]:
    """The operators the run's net executes in a forward pass, profiled here on their own."""
    net = instantiate(cfg.model)
    images = torch.zeros(2, 1, cfg.data.image_size, cfg.data.image_size)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiled:
        net(images)
    return {event.key for event in profiled.key_averages() if event.key.startswith("aten::")}


def module_records(cfg: DictConfig) -> set[str]:
    """The names Lightning records each layer of the run's net under (the net is the module's `net`)."""
    net = instantiate(cfg.model)
    return {
        f"[pl][module]{type(module).__module__}.{type(module).__name__}: {f'net.{name}' if name else 'net'}"
        for name, module in net.named_modules()
    }


@pytest.mark.slow
def test_debug_profile_logs_each_stage_table_and_traces_the_scheduled_steps(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    result = run_script(
        "train.py", "debug=profile", *TINY_PROFILE, f"hydra.run.dir={tmp_path}", data_dir=tiny_mnist
    )
    assert result.returncode == 0, result.stderr
    cfg = OmegaConf.load(tmp_path / ".hydra" / "config.yaml")
    schedule = cfg.trainer.profiler.schedule
    recorded_steps = list(
        range(schedule.wait + schedule.warmup, schedule.wait + schedule.warmup + schedule.active)
    )
    # training went on past the recorded steps: the schedule ended the record, not the data
    assert recorded_steps[-1] < TRAINING_BATCHES - 1 and recorded_steps[-1] < TEST_BATCHES
    log = (tmp_path / "train.log").read_text()
    ops, modules = net_ops(cfg), module_records(cfg)
    assert "aten::conv2d" in ops  # LeNet convolves

    for stage in ("fit", "test"):
        step = STEP.format(stage="training" if stage == "fit" else "test")
        rows = table(log, stage)
        # the table: the recorded steps, each once, and the net's convolutions among its top rows
        assert rows[step] == rows["ProfilerStep*"] == schedule.active, rows
        assert any(name.startswith("aten::") and "convolution" in name for name in rows), rows
        assert len(rows) == cfg.trainer.profiler.row_limit

        # the trace: those same steps, and the table's rows (bar truncated names) among its events
        events = trace_events(tmp_path, stage)
        names = {event.get("name") for event in events}
        numbered = sorted(
            int(name.split("#")[1]) for name in names if name and name.startswith("ProfilerStep#")
        )
        assert numbered == recorded_steps
        assert (
            sum(event.get("name") == step and event.get("ph") == "X" for event in events) == schedule.active
        )
        assert ops <= names and modules <= names, (ops | modules) - names
        assert {name for name in rows if not name.endswith("...")} - {"ProfilerStep*"} <= names
    assert len(list(tmp_path.glob("*.pt.trace.json"))) == 2  # nothing of validation recorded
