"""The CPU kernels held to one instruction set, so that a seed trains to the same figures on other
machines: set in the environment before torch is imported (train.py, and the tests' runs), recorded
in each run's environment.json (mnist_classifier.records)."""

import getpass
import os
import tempfile
from pathlib import Path

# The instruction set the CPU kernels of ATen, oneDNN and MKL may use. Left to choose, each takes the
# widest the CPU has (AVX-512, AMX) and sums in another order on a machine that has other ones, so
# the same seed trains to other figures. AVX2 is on every x86-64 CPU of the last decade; on a CPU
# with AMX it costs LeNet's convolutions some speed (docs/benchmarks.md). A variable set in the
# environment wins: ONEDNN_MAX_CPU_ISA=ALL trades the portable figures for that speed.
CPU_NUMERICS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
INDUCTOR_CACHE = "TORCHINDUCTOR_CACHE_DIR"


def pin_cpu_numerics() -> None:
    """Hold the CPU kernels to CPU_NUMERICS, unless the environment says otherwise; before torch is
    imported, as the libraries read the variables once. torch.compile's kernels are cached in a
    folder of each setting's own (unless TORCHINDUCTOR_CACHE_DIR is set): its cache does not tell
    them apart, and a kernel cached under AVX-512 computes garbage under ATEN_CPU_CAPABILITY=avx2."""
    for name, value in CPU_NUMERICS.items():
        os.environ.setdefault(name, value)
    setting = "-".join(os.environ[name] for name in CPU_NUMERICS)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this user id, as in some containers
        user = str(os.getuid())
    default_cache = Path(tempfile.gettempdir()) / f"torchinductor_{user}_{setting}"
    os.environ.setdefault(INDUCTOR_CACHE, str(default_cache))
