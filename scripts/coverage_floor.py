"""Each module of the project, entry points included, covered at least FLOOR by the tests that just
ran (their .coverage data): python scripts/coverage_floor.py; `make test` runs it after the tests.
Prints the modules below it and exits 1, or says that every module is above it."""

import io
import sys
from pathlib import Path

import coverage

FLOOR = 85.0  # percent of statements and branches
ROOT = Path(__file__).resolve().parents[1]
MODULES = [*ROOT.glob("*.py"), *ROOT.glob("src/**/*.py")]


def main() -> int:
    measured = coverage.Coverage(config_file=str(ROOT / "pyproject.toml"), data_file=str(ROOT / ".coverage"))
    measured.load()
    files = {Path(name).resolve() for name in measured.get_data().measured_files()}
    shares = {}
    for module in sorted(MODULES):
        if module.resolve() not in files:
            shares[module] = 0.0  # never imported by any test
        elif module.read_text().strip():
            shares[module] = measured.report(morfs=[str(module)], file=io.StringIO())
    low = {module: share for module, share in shares.items() if share < FLOOR}
    for module, share in low.items():
        print(f"error: {module.relative_to(ROOT)} is covered {share:.1f}%, under the floor of {FLOOR:.0f}%")
    if not low:
        print(f"coverage: every one of the {len(shares)} modules is covered at least {FLOOR:.0f}%")
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
