"""A Lightning profiler that costs nothing when nobody profiles: the trainer's default."""

from contextlib import AbstractContextManager, nullcontext

from lightning.pytorch.profilers import PassThroughProfiler

_NOTHING = nullcontext()


class NoProfiler(PassThroughProfiler):
    """Lightning's PassThroughProfiler (its default when no profiler is given) without its
    generator-based context manager, which the trainer enters about 150 times a training step:
    0.7M instructions a step here, 6% of an MLP step and 1% of a LeNet step."""

    def profile(self, action_name: str) -> AbstractContextManager:
        return _NOTHING
