"""The Jupyter unit's confinement, as data, in one place.

``files/jupyter/jupyter.service.j2`` renders it into the unit (who it runs as, the
limits, the sandboxing), and every step a task runs as the notebook user runs inside
a transient unit with the same settings (``run_as``: the deploy's probe and pip of the
kernel environment, ``fab kernel-env``). Code planted in the user's environment (a
``.pth`` file, a ``sitecustomize``) so never runs with more than a kernel has: not in
sshd's cgroup, not with new privileges, not after the step ended. On Upstart hosts,
which have no such box (the Jupyter job has none either), the same steps run as the
user with a clean environment and a time bound (``initsys.upstart``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import kernelenv
from .facts.commands import RunAs

Setting = tuple[str, tuple[str, ...]]       # a unit setting: its key, its words


@dataclass(frozen=True)
class Block:
    """Settings and why (the comment lines above them in the unit)."""

    settings: tuple[Setting, ...]
    why: tuple[str, ...] = ()


def _on(*keys: str) -> tuple[Setting, ...]:
    return tuple((key, ("yes",)) for key in keys)


def writable(v: dict[str, Any]) -> tuple[str, ...]:
    """The notebook user's home, and the notebooks when they are elsewhere."""
    home, notebooks = v["jupyter_home"], v["notebook_dir"]
    return (home,) if notebooks.startswith(home.rstrip("/") + "/") else (home, notebooks)


def identity(v: dict[str, Any]) -> list[Block]:
    return [Block((("User", (v["jupyter_user"],)), ("Group", (v["jupyter_user"],))))]


def limits(v: dict[str, Any]) -> list[Block]:
    """MemoryMax and TasksMax (0 turns one off); a transient unit gets its own."""
    settings = [*([("MemoryMax", (str(v["memory_max"]),))] if not kernelenv.off(v["memory_max"]) else []),
                *([("TasksMax", (str(v["tasks_max"]),))] if v["tasks_max"] else [])]
    return [Block(tuple(settings))]


def hardening(v: dict[str, Any]) -> list[Block]:
    paths = writable(v)
    return [
        Block((("UMask", ("0027",)), *_on("NoNewPrivileges"), ("CapabilityBoundingSet", ()),
               ("AmbientCapabilities", ()), *_on("PrivateTmp", "PrivateDevices"),
               ("ProtectSystem", ("strict",)), ("ProtectHome", ("tmpfs",)))),
        Block((("BindPaths", paths), ("ReadWritePaths", paths),
               *_on("ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
                    "ProtectControlGroups", "ProtectClock", "ProtectHostname"),
               ("ProtectProc", ("invisible",)),
               *_on("RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID"),
               ("RestrictAddressFamilies", ("AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK")),
               *_on("LockPersonality", "RemoveIPC"), ("KeyringMode", ("private",)),
               ("SystemCallArchitectures", ("native",))),
              ("Other users' homes are hidden; the notebook user's (and the notebooks, wherever",
               "they are) are bound back, writable under the read-only system.")),
        Block((("SystemCallFilter", ("@system-service",)), ("SystemCallErrorNumber", ("EPERM",))),
              ("The usual system service calls; others fail with EPERM (rather than killing",
               "the kernel that tried them).")),
        Block((("LimitCORE", ("0",)),),
              ("No core dumps: a crashed server's memory holds session secrets.",)),
    ]


def unit_settings(v: dict[str, Any]) -> dict[str, list[Block]]:
    """What the unit template renders, block by block (``unit_confinement``)."""
    return {"identity": identity(v), "limits": limits(v), "hardening": hardening(v)}


def properties(v: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """Every setting of the confinement as a transient unit takes it: (key, value)."""
    return tuple((key, " ".join(words)) for blocks in unit_settings(v).values()
                 for block in blocks for key, words in block.settings)


def confinement(v: dict[str, Any]) -> dict[str, tuple[tuple[str, str], ...]]:
    """The engine's ``Context.confinement``: the notebook user, in the unit's box."""
    return {v["jupyter_user"]: properties(v)}


def run_as(v: dict[str, Any], init: str) -> RunAs:
    """How a task outside the deploy's states runs something as the notebook user."""
    return RunAs(v["jupyter_user"], init, properties(v))


def template_vars(v: dict[str, Any]) -> dict[str, Any]:
    return {"unit_confinement": unit_settings(v)}
