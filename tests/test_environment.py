"""environment.yml (conda) and requirements.txt (pip) must name the same packages at the same versions."""
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def pip_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def conda_pins() -> dict[str, str]:
    spec = yaml.safe_load((ROOT / "environment.yml").read_text())
    pins = {}
    for dependency in spec["dependencies"]:
        if isinstance(dependency, dict):
            for line in dependency["pip"]:
                name, version = line.split("==")
                pins[name.lower()] = version
        elif not dependency.startswith(("python=", "pip")) or dependency.startswith("pyyaml"):
            name, version = dependency.split("=")
            pins[name.lower()] = version
    return pins


def test_same_packages_and_pins():
    assert pip_pins() == conda_pins()


def test_conda_forge_and_python_311():
    spec = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert spec["channels"] == ["conda-forge"]
    assert "python=3.11" in spec["dependencies"]
