"""The settings a run shows its trackers: the group choices and their values, flat."""

from mnist_classifier.hyperparameters import hyperparameters


def test_hyperparameters_hold_the_choices_and_their_values(compose_config) -> None:
    cfg = compose_config("optimizer=adam", "model=mlp", "augment=affine")
    choices = {"model": "mlp", "optimizer": "adam", "loss": "cross_entropy", "augment": "affine"}
    hparams = hyperparameters(cfg, choices)
    assert hparams["model"] == "mlp" and hparams["optimizer"] == "adam" and hparams["augment"] == "affine"
    assert hparams["optimizer.lr"] == 0.001 and "optimizer.momentum" not in hparams
    assert hparams["model.hidden_sizes"] == "[200, 50]" and hparams["augment.rotation"] == 10
    assert hparams["data.batch_size"] == cfg.data.batch_size and hparams["seed"] == 42
    assert not any(key.split(".")[-1].startswith("_") for key in hparams)
    assert "data.data_dir" not in hparams
    assert hparams["data.dataset.name"] == "mnist"
