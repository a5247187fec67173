"""The CPU kernels held to one instruction set, and torch.compile's cache kept apart for each setting."""

import os
import tempfile

import pytest

from mnist_classifier.cpu_numerics import CPU_NUMERICS, INDUCTOR_CACHE, pin_cpu_numerics


def test_each_setting_of_the_cpu_kernels_gets_its_own_compile_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    def cache_after_pinning(**environment: str) -> str:
        for name in (*CPU_NUMERICS, INDUCTOR_CACHE):
            monkeypatch.delenv(name, raising=False)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        pin_cpu_numerics()
        return os.environ[INDUCTOR_CACHE]

    pinned = cache_after_pinning()
    assert pinned == cache_after_pinning() and pinned.startswith(tempfile.gettempdir())
    assert cache_after_pinning(ATEN_CPU_CAPABILITY="default") != pinned
    assert cache_after_pinning(ONEDNN_MAX_CPU_ISA="ALL") != pinned
    assert cache_after_pinning(TORCHINDUCTOR_CACHE_DIR="/srv/cache") == "/srv/cache"
