"""Lightning's hook calls, made cheap where nothing is profiled. At each of a training step's six
callback hooks (batch start, before and after backward, before the optimizer step and zero_grad,
batch end), Lightning calls the hook of every callback, each inside
`trainer.profiler.profile(f"[Callback]{callback.state_key}.{hook}")`, profiling or not: a
generator-based context manager, and the callback's state key formatted anew. Both are most of what
a callback costs a step when its hook has nothing to do (docs/benchmarks.md, "In instructions").
The two classes here keep what runs and what is saved as it is, through Lightning's public classes.
"""

import contextlib
import functools

from lightning.pytorch import callbacks
from lightning.pytorch.profilers import PassThroughProfiler

NOTHING = contextlib.nullcontext()


class Unprofiled(PassThroughProfiler):
    """Lightning's profiler for when nothing is profiled (the trainer's default), whose `profile`
    hands back one shared context that does nothing, rather than making a generator per call."""

    def profile(self, action_name: str) -> contextlib.AbstractContextManager:
        return NOTHING


class ModelCheckpoint(callbacks.ModelCheckpoint):
    """Lightning's ModelCheckpoint, its state key formatted once: the settings it is made of are
    fixed when the callback is made. The key is Lightning's own, so checkpoints are unchanged."""

    @functools.cached_property
    def state_key(self) -> str:
        return super().state_key
