"""Registries: the extension points, where an implementation registers itself under a name.

Three kinds of thing are found by name rather than by a hand-written factory:

- :data:`recipes` — training recipes (``linear``, ``encoder``, …), one module each in
  ``stillhouse/train/recipes/``;
- :data:`backends` — LLM runtimes (``llamacpp``, ``openai``), one module each in
  ``stillhouse/llm/backends/``;
- :data:`system_sources` — what ``--system NAME=SOURCE:VALUE`` may name (``preds``, ``llm``,
  ``model``, ``cascade``), one module each in ``stillhouse/systems/``.

An implementation registers itself where it is defined (``recipes.register("linear")(Linear())``,
or ``@backends.register("openai")`` on a function), so a new one is a new file in its folder and
no edit elsewhere; code that needs one looks its name
up (:meth:`Registry.get`) and never imports the implementations by name, so no module imports
a module that imports it back. The built-in modules are imported on first lookup (the module
named like the entry first, every module of the folder when listing); other packages can add
entries through the entry-point group ``stillhouse_<kind>`` (catalogue, as spaCy's registry).
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import catalogue

T = TypeVar("T")
_MODULE_NAME = re.compile(r"[a-z][a-z0-9_-]*")


class Registry(Generic[T]):
    """Entries of one kind by name; the built-ins live one module each in ``package``."""

    def __init__(self, kind: str, package: str) -> None:
        self.kind = kind
        self.package = package
        self._entries = catalogue.create("stillhouse", kind, entry_points=True)
        self._all_imported = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated object (or class) as ``name``."""

        def add(entry: T) -> T:
            self._entries.register(name, func=entry)
            return entry

        return add

    def get(self, name: str) -> T | None:
        """The entry registered as ``name``, or None when there is none."""
        if name in self._entries:
            return self._entries.get(name)  # type: ignore[no-any-return]
        module = name.replace("-", "_")
        if _MODULE_NAME.fullmatch(name) and importlib.util.find_spec(f"{self.package}.{module}"):
            importlib.import_module(f"{self.package}.{module}")
        else:
            self._import_all()
        return self._entries.get(name) if name in self._entries else None  # type: ignore[no-any-return]

    def all(self) -> dict[str, T]:
        """Every entry by name: the built-ins and those of installed plugins."""
        self._import_all()
        return dict(self._entries.get_all())

    def _import_all(self) -> None:
        if self._all_imported:
            return
        package = importlib.import_module(self.package)
        for module in pkgutil.iter_modules(package.__path__):
            if not module.ispkg and not module.name.startswith("_"):
                importlib.import_module(f"{self.package}.{module.name}")
        self._all_imported = True


recipes: Registry[Any] = Registry("recipes", "stillhouse.train.recipes")
backends: Registry[Any] = Registry("backends", "stillhouse.llm.backends")
system_sources: Registry[Any] = Registry("system_sources", "stillhouse.systems")
