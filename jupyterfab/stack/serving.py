"""Where Jupyter Server listens and how the tasks tell that it is the service's own process.

Jupyter Server listens on a Unix socket, never on a TCP port, in a folder root made:

    /var/lib/jupyterfab/socket            root:jupyterfab-socket 2770: only root and the
                                          group's members can open anything in it
    /var/lib/jupyterfab/socket/jupyter.sock   made by the server (its group the folder's,
                                          0660); NGINX proxies to it

The group's members are NGINX's user (in /etc/group) and the systemd unit, through its
``SupplementaryGroups=`` (the notebook user itself is not a member): a process of the
notebook user outside the unit, say an SSH login, cannot open the folder, so it cannot
take the socket's place when the server stops. (On Upstart hosts, which have no such
setting, the notebook user is a member itself.)

"Serving" means what NGINX would reach answers as Jupyter Server and is the service's
own main process: ``CHECK`` (files/jupyter/serving.py.j2, installed by the deploy)
connects to the socket, asks the kernel which process listens there (SO_PEERCRED) and
GETs /api. The unit's start check, ``fab status`` and ``fab upgrade``'s watcher run it
with the pid their init system names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from jupyterfab.engine.shell import Command, cmd

SOCKET_DIR = "/var/lib/jupyterfab/socket"
SOCKET = f"{SOCKET_DIR}/jupyter.sock"
SOCKET_GROUP = "jupyterfab-socket"
NGINX_USER = "www-data"
CHECK = "/usr/local/sbin/jupyterfab-serving"


@dataclass(frozen=True)
class Serving:
    """``CHECK``'s verdict (pure)."""

    ok: bool
    why: str
    pid: int | None = None
    version: str = ""


def template_vars() -> dict[str, str]:
    return {"jupyter_socket": SOCKET, "jupyter_socket_dir": SOCKET_DIR,
            "jupyter_socket_group": SOCKET_GROUP, "nginx_user": NGINX_USER, "serving_check": CHECK}


def check(pid: str | int) -> Command:
    """``CHECK`` once, as the caller's user: is ``pid`` the process that serves ``SOCKET``?"""
    return cmd(CHECK, SOCKET, pid)


# $1 the service, $2 the socket, $3 the check. MAIN_PID: the init's shell that prints
# the service's main pid (initsys: main_pid_shell).
_CHECK_SERVICE = r"""[ -x "$3" ] || { printf '{"ok": false, "why": "%s is missing: deployed by an earlier jupyterfab (deploy again)"}\n' "$3"; exit 1; }
exec "$3" "$2" "$(MAIN_PID)"
"""


def check_service(service: str, main_pid_shell: str) -> Command:
    """``CHECK`` once, for the pid the init system gives the service as its main process."""
    return cmd("sh", "-c", _CHECK_SERVICE.replace("MAIN_PID", main_pid_shell), "sh", service, SOCKET, CHECK)


def parse(stdout: str, stderr: str = "") -> Serving:
    """``CHECK``'s JSON line; an answer that is not one says so (pure)."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            said = json.loads(line)
        except ValueError:
            continue
        if isinstance(said, dict) and "ok" in said:
            return Serving(bool(said["ok"]), str(said.get("why", "")), said.get("pid"),
                           str(said.get("version") or ""))
    return Serving(False, f"cannot tell: {(stderr or stdout).strip()[-200:] or 'no answer'}")
