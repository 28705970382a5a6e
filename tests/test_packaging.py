"""The wheel's package list names every package in the tree.

setuptools is given an explicit list (three source folders map into one
import name), so a new subpackage left out of it installs as a wheel
without that code; the wheel check would only find out minutes later.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _declared() -> tuple[set[str], dict[str, str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return set(config["packages"]), config["package-dir"]


def _on_disk(package_dir: dict[str, str]) -> set[str]:
    found: set[str] = set()
    for name, folder in package_dir.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            parts = init.parent.relative_to(base).parts
            # A package mapped to its own folder is found under that mapping.
            if parts and ".".join((name, *parts)) in package_dir:
                continue
            found.add(".".join((name, *parts)))
    return found


def test_every_package_in_the_tree_is_in_the_wheel() -> None:
    declared, package_dir = _declared()
    missing = _on_disk(package_dir) - declared
    assert not missing, f"pyproject.toml [tool.setuptools] packages lacks {sorted(missing)}"


def test_every_declared_package_exists() -> None:
    declared, package_dir = _declared()
    assert not declared - _on_disk(package_dir)
