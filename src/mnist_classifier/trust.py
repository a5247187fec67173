"""Which modules a checkpoint's net may name: an allow-list, since a checkpoint is data and a
`_target_` elsewhere (os.system, torch.hub.load) would run whatever it names when the net is built.

The package's nets and torch.nn are trusted; a user trusts the module of a net of their own with
the environment variable MNIST_CLASSIFIER_TRUST (module names, comma-separated) or the inference
commands' `--trust MODULE`. Imports no torch: the commands add the option before they load it.
"""

import argparse
import os
from collections.abc import Iterable

NET_MODULES = ("mnist_classifier.models", "torch.nn")
TRUST_VARIABLE = "MNIST_CLASSIFIER_TRUST"


def trusted_modules(trusted: Iterable[str] = ()) -> tuple[str, ...]:
    """NET_MODULES, the modules TRUST_VARIABLE names, and `trusted`."""
    declared = os.environ.get(TRUST_VARIABLE, "").split(",")
    names = (name.strip() for name in (*NET_MODULES, *declared, *trusted))
    return tuple(dict.fromkeys(name for name in names if name))


def untrusted(targets: Iterable[str], trusted: Iterable[str] = ()) -> str | None:
    """The first of `targets` (dotted names) outside the trusted modules, or None."""
    modules = trusted_modules(trusted)
    return next(
        (target for target in targets if not any(target.startswith(f"{module}.") for module in modules)),
        None,
    )


def how_to_trust(target: str) -> str:
    module = target.rpartition(".")[0] or target
    return f"if you trust {module}, give --trust {module} or set {TRUST_VARIABLE}={module}"


def add_trust_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust",
        action="append",
        default=[],
        metavar="MODULE",
        help=f"a module whose nets a checkpoint may name, beside {', '.join(NET_MODULES)} (repeatable; "
        f"or {TRUST_VARIABLE}=MODULE,...)",
    )
