"""Show the package's real source in a notebook, so there is exactly one copy of each idea."""
from __future__ import annotations

import inspect
from typing import Any

from IPython.display import Markdown, display


def show_source(*objects: Any) -> None:
    """Render each function's or class's source as a highlighted code block."""
    for obj in objects:
        source = inspect.getsource(obj)
        where = f"{obj.__module__}.{obj.__qualname__}"
        display(Markdown(f"`{where}`\n```python\n{source}```"))
