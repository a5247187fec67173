"""The instruction set of the CPU kernels: by default the libraries choose it from the CPU (the
fastest); MNIST_CPU_KERNELS=avx2 holds them to AVX2, as the README's Results were trained. Applied
in the environment before torch is imported (train.py, and the tests' runs), and recorded in each
run's environment.json (mnist_classifier.records)."""

import getpass
import os
import tempfile
from pathlib import Path

from mnist_classifier.errors import BadInput

# The variables that hold the CPU kernels of ATen, oneDNN and MKL to one instruction set. Left
# unset, each takes the widest the CPU has (AVX-512, AMX), and sums in another order than on a CPU
# with other ones, so a seed's figures may differ between CPU models in their last digits. Held
# to AVX2 they differed all the same between an Intel and an AMD CPU, at a cost in speed on a CPU
# with AMX (docs/benchmarks.md): hence an opt-in, for figures that compare with a run that used it.
CPU_NUMERICS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
SWITCH = "MNIST_CPU_KERNELS"
SETTINGS = {"native": {}, "avx2": CPU_NUMERICS}  # native: as the libraries choose
INDUCTOR_CACHE = "TORCHINDUCTOR_CACHE_DIR"
WIDE_ISA = ("avx2", "avx512f", "avx512_bf16", "amx_tile")  # what the libraries choose among on x86-64


def pin_cpu_numerics() -> None:
    """Apply MNIST_CPU_KERNELS (native unless set) to the environment, where a variable of
    CPU_NUMERICS is not set already; before torch is imported, as the libraries read the variables
    once. torch.compile's kernels are cached in a folder of each setting's own (unless
    TORCHINDUCTOR_CACHE_DIR is set): its cache does not tell them apart, and a kernel cached under
    AVX-512 computes garbage under ATEN_CPU_CAPABILITY=avx2."""
    choice = os.environ.get(SWITCH) or "native"
    if choice not in SETTINGS:
        raise BadInput(f"{SWITCH}={choice} is invalid: give {' or '.join(SETTINGS)}")
    for name, value in SETTINGS[choice].items():
        os.environ.setdefault(name, value)
    setting = "-".join(os.environ.get(name, "native") for name in CPU_NUMERICS)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this user id, as in some containers
        user = str(os.getuid())
    default_cache = Path(tempfile.gettempdir()) / f"torchinductor_{user}_{setting}"
    os.environ.setdefault(INDUCTOR_CACHE, str(default_cache))


def cpu_isa() -> list[str]:
    """The instruction sets of WIDE_ISA that this CPU has (Linux's /proc/cpuinfo; none elsewhere):
    the widest is what a library left to choose takes."""
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    except OSError:
        return []
    return [isa for isa in WIDE_ISA if isa in flags]
