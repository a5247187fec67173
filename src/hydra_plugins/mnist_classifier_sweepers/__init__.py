"""Hydra sweeper plugins of mnist_classifier (Hydra loads plugins only from `hydra_plugins`).

- `grid` (`grid_sweeper.GridSweeper`): Hydra's grid of every combination, going on past failed jobs.
- `optuna` (`optuna_sweeper.OptunaSweeper`): an Optuna study in SQLite that resumes and prunes.

Their configs are `conf/hydra/sweeper/grid.yaml` and `conf/hydra/sweeper/optuna.yaml`.
"""
