"""Train and test one classifier: python train.py [group=option ...] [key=value ...].

The command line is composed and checked before Hydra starts the run (bad input: one line, exit
status 2); torch and Lightning are imported only once a run starts, so that --help, --cfg and
refusals answer at once, and the CPU kernels' instruction set is set before (mnist_classifier.cpu_numerics).
"""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mnist_classifier.config import preflight
from mnist_classifier.cpu_numerics import pin_cpu_numerics
from mnist_classifier.errors import failure_policy


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> dict[str, float]:
    """Returns the run's results, which sweeps rank and optimise (mnist_classifier.training)."""
    with failure_policy(in_sweep=HydraConfig.get().mode == RunMode.MULTIRUN):
        if HydraConfig.get().runtime.choices.get("tune"):  # tune=lr_find: a range test instead of training
            from mnist_classifier.lr_find import find_lr

            return find_lr(cfg)
        from mnist_classifier.training import run

        return run(cfg)


if __name__ == "__main__":
    with failure_policy():
        pin_cpu_numerics()  # MNIST_CPU_KERNELS, before torch is imported
        preflight(sys.argv[1:])
    main()
