"""TensorBoard dashboards beyond the curves: `drawing` makes the pictures from tensors, `callbacks`
logs them during a run, `hparams` fills the HParams tab when a run ends."""
