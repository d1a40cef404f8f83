"""Package attributes imported on first use (PEP 562), so ``import ldm_med`` loads no torch and the
refiner path loads no MONAI: ``__getattr__, __dir__ = lazy_attributes("pkg", {name: module}, globals())``."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_attributes(package: str, where: dict[str, str],
                    namespace: dict[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``: ``where`` maps each public name
    to the module that defines it; a name, once imported, is stored in ``namespace``."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(namespace.get("__all__", where))

    return __getattr__, __dir__
