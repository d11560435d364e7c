"""The README's map of the package names every module in helpers/, so a new file is not left for readers to find."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_module_is_in_the_package_map():
    readme = (ROOT / "README.md").read_text()
    package_map = readme[readme.index("## The package"):readme.index("## Benchmarks")]
    named = set(re.findall(r"\b(\w+\.py)\b", package_map))
    modules = {path.name for path in (ROOT / "helpers").glob("*.py") if path.name != "__init__.py"}
    assert len(modules) > 20 and modules <= named, f"not in the README's package map: {sorted(modules - named)}"
