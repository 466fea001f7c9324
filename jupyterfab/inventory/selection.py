"""Which inventory a task reads: one rule for every fab and invoke task.

1. ``--inventory FILE``;
2. else ``$JUPYTERFAB_INVENTORY``;
3. else the first of ``preferred`` that holds the named hosts (the tasks pass the running
   sandbox's inventories, the last demo's first: ``jupyterfab.dev.demo``);
4. else ``hosts.yaml`` in the project.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from jupyterfab import inventory

ENV_VAR = "JUPYTERFAB_INVENTORY"
OVERRIDES_ENV = "JUPYTERFAB_VERIFY_SET"   # verify's --set, for its checks (JSON)
SET_HELP = "override a variable for this run (repeatable)"
HELP = (f"inventory file (default: ${ENV_VAR}, else the running sandbox's when it has the hosts, "
        "else hosts.yaml)")


def candidates(given: str | None, project: Path, preferred: Sequence[Path] = ()) -> list[Path]:
    if given:
        return [Path(given)]
    if os.environ.get(ENV_VAR):
        return [Path(os.environ[ENV_VAR])]
    return [*preferred, project / "hosts.yaml"]


def choose(given: str | None, names: list[str], project: Path, preferred: Sequence[Path] = ()) -> Path:
    """The inventory file by the rule: the first candidate that has every named host.
    When none has them all, the one with the most of them (the last on a tie), so that
    the error names a host that is in none (or the others go with an address)."""
    options = candidates(given, project, preferred)
    best, most = options[-1], 0
    for path in options:
        try:
            hosts = inventory.load(path).hosts
        except inventory.InventoryError:
            continue
        found = sum(n in hosts for n in names)
        if found == len(names):
            return path
        if found > most or (path == options[-1] and found == most):
            best, most = path, found
    return best


def select(given: str | None, names: list[str], project: Path, *, preferred: Sequence[Path] = (),
           group: str | None = None, overrides: dict | None = None) -> tuple[Path, list[inventory.Host]]:
    """(the inventory file, the hosts named in it); an unknown host's error says where
    it looked and how to point elsewhere."""
    path = choose(given, names, project, preferred)
    inv = inventory.load(path)
    try:
        return path, inv.select(names or ([] if group else list(inv.hosts)), group=group,
                                overrides=overrides)
    except inventory.InventoryError as exc:
        if "unknown host" not in str(exc):
            raise
        looked = ", ".join(str(p) for p in candidates(given, project, preferred))
        raise inventory.InventoryError(
            f"{exc}; looked in {looked}: name the file with --inventory FILE "
            f"(or ${ENV_VAR}), or add the host there") from None


def overrides(pairs: list[str] | None) -> dict:
    """``--set key=value`` pairs as variables, each value of its variable's type."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise inventory.InventoryError(f"--set takes key=value, got {pair!r}")
        out[key] = _typed(key, value)
    return out


def _typed(key: str, value: str):
    """--set values are text; give them the type the variable has (schema.py)."""
    default = inventory.VAR_DEFAULTS.get(key)
    if isinstance(default, bool):
        words = {"true": True, "yes": True, "on": True, "1": True,
                 "false": False, "no": False, "off": False, "0": False}
        if value.lower() not in words:
            raise inventory.InventoryError(f"--set {key}: must be true or false, not {value!r}")
        return words[value.lower()]
    if isinstance(default, list):
        return [item for item in value.split(",") if item]
    if isinstance(default, int):
        if not re.fullmatch(r"[+-]?[0-9]{1,12}", value.strip()):
            raise inventory.InventoryError(f"--set {key}: must be a whole number, not {value!r}")
        return int(value)
    if isinstance(default, str):
        return value
    return int(value) if value.isdigit() else value
