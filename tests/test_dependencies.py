"""Every dependency in pyproject.toml has a floor, and no floor admits a release with a published
security advisory that reaches this project: the table below is the advisories, written out."""

import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

# The lowest release of each dependency without a known advisory that reaches this project, and
# why; None: no advisory found. A dependency that is not here fails the test until it is looked up.
SAFE_FROM: dict[str, tuple[str, str] | None] = {
    "torch": ("2.10", "CVE-2025-32434 (2.6.0), CVE-2026-24747 (2.10.0): torch.load(weights_only=True)"),
    "torchvision": None,
    "lightning": ("2.6.6", "GHSA-w37p-236h-pfx3 (2.6.2, 2.6.3 malicious), CVE-2026-31221, CVE-2026-58659"),
    "hydra-core": ("1.3.7", "CVE-2026-68508 (1.3.4), CVE-2026-106439, CVE-2026-106441 (1.3.7): instantiate"),
    "tensorboard": None,
    "torchmetrics": None,
    "matplotlib": None,
    "optuna": None,
    "optuna-integration": None,
    "hydra-joblib-launcher": None,
    "hydra-submitit-launcher": None,
    "joblib": ("1.2.0", "CVE-2022-21797: Parallel(pre_dispatch=...) is eval'd"),
    "scipy": ("1.10", "CVE-2023-25399"),
    "scikit-image": None,
    "pydantic": ("2.4.0", "CVE-2024-3772: e-mail validation's regular expression"),
    "pillow": ("13.0.0", "GHSA-8g5g-8vmr-9782, GHSA-5x8w-8jj5-q52h, CVE-2026-96778: decoding"),
    "fastapi": None,
    "starlette": ("1.0.1", "CVE-2026-48710 (GHSA-86qp-5c8j-p5mr): the Host header poisons request.url"),
    "uvicorn": ("0.11.7", "CVE-2020-7694, CVE-2020-7695"),
    "h11": ("0.16.0", "CVE-2025-43859: request smuggling"),
    "python-multipart": ("0.0.31", "CVE-2026-42561 (0.0.27), CVE-2026-53540 (0.0.31)"),
    "tqdm": ("4.66.3", "CVE-2024-34062: the CLI eval's its arguments"),
    "onnx": ("1.21.0", "CVE-2026-27489, CVE-2026-34445, CVE-2026-34446, CVE-2026-34447: external data"),
    "onnxscript": None,
    "onnxruntime": None,
    "psycopg": None,
    "optuna-dashboard": None,
    "mlflow": ("3.11.0", "CVE-2026-2651, CVE-2026-2652 (3.10.0), CVE-2026-4137 (3.11.0)"),
    "wandb": None,
    "pytest": ("9.0.3", "CVE-2025-71176 (GHSA-6w46-j5rx-g56g): /tmp/pytest-of-USER"),
    "pytest-xdist": None,
    "pytest-cov": None,
    "pytest-timeout": None,
    "coverage": None,
    "ruff": None,
    "playwright": ("1.55.1", "CVE-2025-59288: browsers downloaded without checking them"),
    "httpx2": None,
}
# Releases that must never be admitted, whatever the floor.
WITHDRAWN = {"lightning": ["2.6.2", "2.6.3"]}


def requirements() -> list[Requirement]:
    """Every requirement of the project and its extras, but the extras' reference to the project."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    lines = [
        *project["dependencies"],
        *(line for extra in project["optional-dependencies"].values() for line in extra),
    ]
    return [req for req in map(Requirement, lines) if req.name != project["name"]]


def floor(requirement: Requirement) -> Version | None:
    """The version after `>=`, if the requirement has one."""
    bounds = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
    return max(bounds, default=None)


def test_every_dependency_has_a_floor_and_was_looked_up() -> None:
    found = requirements()
    assert len(found) > 20  # the dependencies and every extra were read
    assert [str(req) for req in found if floor(req) is None] == []
    assert sorted(req.name for req in found if req.name not in SAFE_FROM) == []


def violations(requirement: Requirement) -> list[str]:
    """What is wrong with a requirement line: no floor, a floor below its advisories' fixes, or a
    withdrawn release admitted."""
    found = floor(requirement)
    if found is None:
        return [f"{requirement}: no floor"]
    wrong = []
    if (safe := SAFE_FROM.get(requirement.name)) is not None and found < Version(safe[0]):
        wrong.append(f"{requirement}: below {safe[0]}, {safe[1]}")
    wrong += [
        f"{requirement}: admits {bad}"
        for bad in WITHDRAWN.get(requirement.name, [])
        if requirement.specifier.contains(bad)
    ]
    return wrong


@pytest.mark.parametrize("requirement", requirements(), ids=lambda req: req.name)
def test_no_floor_admits_a_release_with_an_advisory(requirement: Requirement) -> None:
    assert violations(requirement) == []


def test_what_is_installed_meets_the_floors() -> None:
    """pip installed releases that the floors admit (a floor raised past them would fail here first)."""
    unmet = []
    for requirement in requirements():
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            continue  # an extra this environment did not install
        if not requirement.specifier.contains(installed, prereleases=True):
            unmet.append(f"{requirement} ({installed} installed)")
    assert unmet == []


def test_the_check_catches_a_floor_below_an_advisory() -> None:
    """The same check, on lines that the advisories rule out."""
    assert violations(Requirement("torch>=2.4")) == ["torch>=2.4: below 2.10, " + SAFE_FROM["torch"][1]]
    assert violations(Requirement("tqdm")) == ["tqdm: no floor"]
    assert violations(Requirement("lightning>=2.6.6,<2.7")) == []
    assert len(violations(Requirement("lightning>=2.6"))) == 3  # below 2.6.6, and 2.6.2 and 2.6.3 admitted
