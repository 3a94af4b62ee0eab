"""One kind of open registry for strategies, model sources, data sources and preflight measurements.

Built-ins are the modules of one package (one file each); plugins add entries through a
``importlib.metadata`` entry-point group. A second entry with a name already taken is an
error, whoever registers first, and an unknown name is refused with the closest names.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Any

from transferlab.errors import UserError, closest


class Registry:
    """``kind``: what an entry is, in messages; ``package``: the built-ins; ``group``: the plugins' entry points."""

    def __init__(self, kind: str, package: str, group: str):
        self.kind, self.package, self.group = kind, package, group
        self._entries: dict[str, Any] = {}
        self._state = "no"  # no | loading | done

    def register(self, name: str, obj: Any = None):
        """``REG.register("timm", fn)`` or, as a decorator, ``@REG.register("timm")``."""
        if obj is None:
            return lambda o: self.register(name, o)
        self._load()  # built-ins first, so a plugin's clash with them is caught whoever registers first
        if not name:
            raise ValueError(f"a {self.kind} needs a name ({obj!r})")
        if name in self._entries and self._entries[name] is not obj:
            raise ValueError(f"{self.kind} name '{name}' is already registered by {_qualname(self._entries[name])}")
        self._entries[name] = obj
        return obj

    def _load(self) -> None:
        if self._state != "no":
            return
        self._state = "loading"
        pkg = importlib.import_module(self.package)
        for mod in pkgutil.iter_modules(pkg.__path__):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{self.package}.{mod.name}")
        for ep in entry_points(group=self.group):
            ep.load()
        self._state = "done"

    def entries(self) -> dict[str, Any]:
        self._load()
        return dict(self._entries)

    def names(self) -> list[str]:
        return sorted(self.entries())

    def get(self, name: str, fix: str | None = None) -> Any:
        entries = self.entries()
        if name not in entries:
            raise UserError(f"unknown {self.kind} '{name}'{closest(name, entries)}",
                            fix or f"choose one of: {', '.join(sorted(entries))}")
        return entries[name]


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def accepted_options(fn: Callable) -> set[str] | None:
    """Keyword options ``fn`` takes: its parameters with defaults, following ``fn.options_of`` past a
    ``**options`` (the functions those options go on to). None: any option."""
    names: set[str] = set()
    for target in (fn, *getattr(fn, "options_of", ())):
        params = inspect.signature(target).parameters.values()
        names |= {p.name for p in params if p.kind == p.KEYWORD_ONLY or (p.kind == p.POSITIONAL_OR_KEYWORD and p.default is not p.empty)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names
    return None if not getattr(fn, "options_of", ()) else names


def check_options(what: str, given: Iterable[str], allowed: set[str] | None, hidden: Iterable[str] = ()) -> None:
    """Refuse an option ``what`` does not take, naming the closest ones it does."""
    if allowed is None:
        return
    shown = sorted(allowed - set(hidden))
    for name in given:
        if name not in allowed:
            raise UserError(f"{what} has no option '{name}'{closest(name, shown)}",
                            f"its options are: {', '.join(shown) or 'none'}")
