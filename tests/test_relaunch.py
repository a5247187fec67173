"""A sweep job named in its environment, found by the processes it starts (its data-parallel ranks)
and not by its own. The ranks' run of the job is checked end to end in test_sweeps.py."""

import json
import os

import pytest
from omegaconf import OmegaConf

from mnist_classifier.relaunch import JOB_ENV, forget_job, name_job, relaunched_job


def test_a_jobs_name_is_found_in_the_processes_it_starts_until_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(JOB_ENV, "null")  # put back as it was after the test
    assert relaunched_job() is None  # no job running: a sweep's own process
    hydra = {
        "overrides": {"task": ["seed=3"]},
        "runtime": {"output_dir": "/runs/1_seed=3"},
        "job": {"num": 1},
    }
    name_job(OmegaConf.create({"hydra": hydra}))
    assert relaunched_job() is None  # the job's own process sweeps on
    job = json.loads(os.environ[JOB_ENV])
    assert job == {"overrides": ["seed=3"], "output_dir": "/runs/1_seed=3", "num": 1, "pid": os.getpid()}
    rank = {**job, "pid": os.getpid() + 1}
    monkeypatch.setenv(JOB_ENV, json.dumps(rank))  # as a process the job started sees it
    assert relaunched_job() == rank
    forget_job()
    assert JOB_ENV not in os.environ and relaunched_job() is None
