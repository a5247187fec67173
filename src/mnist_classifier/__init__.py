"""LeNet-5 and an MLP on MNIST at 32x32, trained with Lightning and configured with Hydra."""
