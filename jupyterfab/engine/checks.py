"""The check vocabulary: one rule per name, shared by the state arguments
(``engine.states.base``, which turn a problem into an ``ArgError``) and the inventory's
schema (which names the key and the file:line).

A check takes a value and returns the problem in words, or None when the value is fine.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], "str | None"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Leading "-" is excluded: a name must never read as an option.
_ACCOUNT = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")


def has_control(value: str) -> bool:
    """A control character (or a Unicode line separator) anywhere in the text."""
    return bool(_CONTROL.search(value))


def account_name(value: str) -> str | None:
    """User or group name."""
    if not _ACCOUNT.fullmatch(value):
        return f"{value!r} is not a valid user or group name"
    return None
