"""Hydra plugins of mnist_classifier (Hydra loads plugins only from `hydra_plugins`).

- `grid` (`grid_sweeper.GridSweeper`): Hydra's grid of every combination, going on past failed jobs.
- `optuna` (`optuna_sweeper.OptunaSweeper`): a worker of an Optuna study, which any number of
  workers may share in one storage (SQLite, PostgreSQL, a journal file); it resumes and prunes.
- `parallel` (`parallel_launcher.ParallelLauncher`): Hydra's joblib launcher, one GPU per job.
- `sweeps`: what both sweepers share, and the DDP ranks of a sweep's job.

Their configs are `conf/hydra/sweeper/grid.yaml`, `conf/hydra/sweeper/optuna.yaml` and
`conf/hydra/launcher/parallel.yaml`.
"""
