"""The tests. Imported before conftest.py and any test module, so before torch: the in-process runs
use the CPU kernels that a user's run holds to (records.pin_cpu_numerics)."""

from mnist_classifier.records import pin_cpu_numerics

pin_cpu_numerics()
