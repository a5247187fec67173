"""The tests. Imported before conftest.py and any test module, so before torch: the in-process runs
use the CPU kernels that a user's run holds to (cpu_numerics.pin_cpu_numerics)."""

from mnist_classifier.cpu_numerics import pin_cpu_numerics

pin_cpu_numerics()
