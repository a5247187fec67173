"""TensorBoard dashboards beyond the curves: `drawing` makes the pictures from tensors, `callbacks`
logs them during a run and fills the HParams tab when it ends."""
