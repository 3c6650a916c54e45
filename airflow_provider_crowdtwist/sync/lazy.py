"""A stand-in for a heavy module (pandas, numpy) until the first time the code really uses it.

Why it is built this way: ``docs/sync-design.md``, section ``sync/lazy.py``.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """``module_name`` imported on first attribute access, then bound as ``alias`` in ``namespace``."""

    def __init__(self, module_name: str, namespace: dict[str, Any], alias: str) -> None:
        self._module_name = module_name
        self._namespace = namespace
        self._alias = alias

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):  # copy/pickle/introspection probes must not import anything
            raise AttributeError(attribute)
        module = importlib.import_module(self._module_name)
        if self._namespace.get(self._alias) is self:
            self._namespace[self._alias] = module
        return getattr(module, attribute)

    def __repr__(self) -> str:
        return f"<lazy module {self._module_name!r}>"
