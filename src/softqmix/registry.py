"""Name -> entry registries that fill themselves from the modules of their packages.

Algorithms, env families and mixers each have one registry. A module adds its own entries
when it is imported, and a registry imports every module of its packages the first time it
is asked for a name. So adding an algorithm or an env family means adding its module (plus
a YAML and a test): no central list of names to keep in step with the code.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Generic, TypeVar

from softqmix.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one kind (`kind` names it in error messages), keyed by name."""

    def __init__(self, kind: str, packages: tuple[str, ...], plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.packages = packages
        self._entries: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str, entry: T) -> T:
        """Add an entry; a second entry under the same name is a programming error."""
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._entries[name] = entry
        return entry

    def discover(self) -> None:
        """Import every module of the registry's packages once, so that each registers itself."""
        if self._discovered:
            return
        self._discovered = True
        for package_name in self.packages:
            package = importlib.import_module(package_name)
            for module in pkgutil.iter_modules(package.__path__, prefix=f"{package_name}."):
                importlib.import_module(module.name)

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._entries)

    def get(self, name: str) -> T:
        """The entry called `name`; an unknown name is a ConfigError that lists the valid ones."""
        self.discover()
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(f"unknown {self.kind} '{name}'; valid {self.plural}: {', '.join(self.names())}") from None

    def __contains__(self, name: object) -> bool:
        self.discover()
        return name in self._entries

    def __iter__(self) -> Iterator[T]:
        self.discover()
        return iter([self._entries[name] for name in sorted(self._entries)])
