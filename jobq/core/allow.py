"""The allow-list of targets: which functions a worker may run.

An entry is a module prefix (``"myapp.tasks"`` allows ``myapp.tasks:fn`` and
``myapp.tasks.sub:fn``, not ``myapp.tasks_old:fn``) or one function (``"myapp.tasks:send"``).
The check reads the target's text only: nothing is imported to decide. An empty or unset
list allows every target (jobq's behaviour without the setting).

Resolving an allowed target (:func:`resolve_allowed`) also refuses a path that walks through
a module or a dunder name (``myapp.tasks:os.system``, ``myapp.tasks:f.__globals__``), which
would otherwise reach outside the allowed module.
"""

from __future__ import annotations

import importlib
import re
import types
from collections.abc import Iterable, Sequence
from typing import Any

from .errors import TargetNotAllowed

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
ENTRY_PATTERN = re.compile(rf"^{_NAME}(\.{_NAME})*(:{_NAME}(\.{_NAME})*)?$")
_TARGET = re.compile(rf"^({_NAME}(?:\.{_NAME})*):({_NAME}(?:\.{_NAME})*)$")


def parse_allowed(value: Any) -> list[str] | None:
    """The entries of a setting: a list, or text separated by commas or whitespace (the
    environment variable). Raises ValueError naming a malformed entry."""
    if value is None:
        return None
    if isinstance(value, str):
        items: Iterable[Any] = [v for v in re.split(r"[\s,]+", value) if v]
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise ValueError("expected a list of module prefixes or 'module:function' names")
    out = []
    for item in items:
        if not isinstance(item, str) or not ENTRY_PATTERN.match(item):
            raise ValueError(f"bad entry {item!r}: expected a module prefix such as 'myapp.tasks' or 'myapp.tasks:fn'")
        out.append(item)
    return out


def is_allowed(target: Any, allowed: Sequence[str] | None) -> bool:
    """Whether ``target`` (``module:function`` text) is inside ``allowed`` (None/empty: all)."""
    if not allowed:
        return True
    if not isinstance(target, str):
        return False
    match = _TARGET.match(target)
    if not match:
        return False
    module, qualname = match.group(1), match.group(2)
    for entry in allowed:
        if ":" in entry:
            entry_module, _, entry_name = entry.partition(":")
            if module == entry_module and (qualname == entry_name or qualname.startswith(entry_name + ".")):
                return True
        elif module == entry or module.startswith(entry + "."):
            return True
    return False


def check_allowed(target: Any, allowed: Sequence[str] | None) -> None:
    """Raise :class:`TargetNotAllowed` unless ``target`` is inside ``allowed``."""
    if not is_allowed(target, allowed):
        raise TargetNotAllowed(str(target), f"{target} is not in the allowed targets ({', '.join(allowed or ())})")


def resolve_allowed(target: str, allowed: Sequence[str] | None) -> Any:
    """Check ``target`` against ``allowed`` (before any import), then import it, refusing a
    path through a module or a dunder attribute. Raises :class:`TargetNotAllowed`."""
    check_allowed(target, allowed)
    module_name, _, qualname = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        if allowed and part.startswith("__"):
            raise TargetNotAllowed(target, f"{target}: dunder attributes are not allowed in a target")
        obj = getattr(obj, part)
        if allowed and isinstance(obj, types.ModuleType):
            raise TargetNotAllowed(target, f"{target}: a target may not reach into another module")
    return obj
