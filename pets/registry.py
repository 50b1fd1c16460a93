"""Finding backends by name.

Backends are found through the ``pets.backends`` entry-point group, where the built-in
ones are registered exactly like a supplier's. Listing reads the entry points' targets
without importing anything; :meth:`Registry.load` imports one backend on demand. A
:class:`Registry` is an instance: tests and notebooks build their own.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from typing import Any

from pets.api import Backend

__all__ = [
    "BUILT_IN_DISTRIBUTION",
    "ENTRY_POINT_GROUP",
    "Registry",
    "UnknownBackend",
    "load_target",
    "unknown_name_message",
]

ENTRY_POINT_GROUP = "pets.backends"

#: The distribution whose entry points are the built-in backends.
BUILT_IN_DISTRIBUTION = "pets-sandbox"


class UnknownBackend(KeyError):
    """No backend is registered under that name."""

    def __str__(self) -> str:
        return str(self.args[0])


def unknown_name_message(what: str, name: str, known: Iterable[str]) -> str:
    """Return "unknown <what> 'x'; did you mean 'y'? Known: ..." for a bad name."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "."
    return f"unknown {what} {name!r}{hint} Known: {', '.join(known) or '(none)'}"


class Registry:
    """Backend names mapped to import targets (``"package.module:Class"``).

    Parameters
    ----------
    targets : Mapping of str to str or type, optional
        Initial entries; a value may be a target string or a Backend class.
    """

    def __init__(self, targets: Mapping[str, str | type[Backend]] | None = None) -> None:
        self._targets: dict[str, str | type[Backend]] = {}
        self._refused: dict[str, str] = {}
        for name, target in (targets or {}).items():
            self.add(name, target)

    @classmethod
    def from_entry_points(cls, group: str = ENTRY_POINT_GROUP) -> Registry:
        """Return a registry of every backend installed under the entry-point ``group``.

        Nothing is imported. A plugin whose name clashes with a built-in backend is
        refused (the built-in wins), as is a second plugin under a name already taken or
        a target that is not ``module:Class``; :meth:`refused` lists them with why.
        """
        registry = cls()
        found = sorted(
            entry_points(group=group),
            key=lambda ep: (_distribution(ep) != BUILT_IN_DISTRIBUTION, _distribution(ep)),
        )
        origin: dict[str, str] = {}
        for ep in found:
            dist = _distribution(ep)
            if ep.name in registry._targets:
                if registry._targets[ep.name] == ep.value:
                    continue
                owner = origin[ep.name]
                kind = "a built-in backend" if owner == BUILT_IN_DISTRIBUTION else f"{owner!r}"
                registry._refused[f"{ep.name} ({dist})"] = (
                    f"plugin {dist!r} registers {ep.name!r} ({ep.value}), a name already taken "
                    f"by {kind} ({registry.target(ep.name)}); rename the plugin's entry point"
                )
                continue
            try:
                registry.add(ep.name, ep.value)
            except ValueError as exc:
                registry._refused[f"{ep.name} ({dist})"] = str(exc)
                continue
            origin[ep.name] = dist
        return registry

    def refused(self) -> dict[str, str]:
        """Entry points refused at registration (name clash, malformed target), each
        with why."""
        return dict(self._refused)

    def load_error(self, name: str) -> str | None:
        """Import the backend ``name`` and return why it cannot be used (any exception
        while importing, or a target that is not a Backend class), or None if it loads."""
        try:
            self.load(name)
        except UnknownBackend:
            raise
        except Exception as exc:  # a plugin may fail in any way while importing
            return f"{type(exc).__name__}: {exc}"
        return None

    def add(self, name: str, target: str | type[Backend]) -> None:
        """Register ``target`` under ``name``; a name already taken is refused."""
        if name in self._targets:
            raise ValueError(
                f"backend name {name!r} is already registered "
                f"(by {self.target(name)}); choose another name"
            )
        if isinstance(target, str) and ":" not in target:
            raise ValueError(f"target {target!r} for {name!r} must look like 'module:Class'")
        self._targets[name] = target

    def names(self) -> list[str]:
        """Return the registered names, sorted, without importing anything."""
        return sorted(self._targets)

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def target(self, name: str) -> str:
        """Return the import target of ``name`` as ``"module:Class"``."""
        target = self._lookup(name)
        if isinstance(target, str):
            return target
        return f"{target.__module__}:{target.__qualname__}"

    def load(self, name: str) -> type[Backend]:
        """Import and return the backend class registered as ``name``.

        Raises
        ------
        UnknownBackend
            The name is not registered (the message suggests the closest name).
        ImportError
            The backend's libraries are not installed (the message names the extra).
        """
        target = self._lookup(name)
        if not isinstance(target, str):
            return target
        return load_target(target, name)

    def _lookup(self, name: str) -> str | type[Backend]:
        if name not in self._targets:
            raise UnknownBackend(unknown_name_message("backend", name, self._targets))
        return self._targets[name]


def _distribution(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    return str(getattr(dist, "name", None) or "unknown distribution")


def load_target(target: str, name: str = "") -> type[Backend]:
    """Import ``"module:Class"`` and return the class."""
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"backend {name or target!r} could not be imported ({exc}); install the extra "
            f"that provides it, e.g. pip install 'pets-sandbox[...]'"
        ) from exc
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TypeError(f"{target}: module {module_name!r} has no {attr!r}") from None
    if not (isinstance(obj, type) and issubclass(obj, Backend)):
        raise TypeError(f"{target} is not a subclass of pets.api.Backend")
    return obj
