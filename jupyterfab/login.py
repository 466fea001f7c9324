"""Whether the notebook account can log in (``jupyter_user_login``, false by default).

Anyone with the Jupyter password runs code as the notebook user, and such code can
write ``~/.ssh/authorized_keys``. Without a login that key opens nothing: the account's
shell is nologin (Jupyter's terminals and a kernel's ``!cmd`` start bash themselves),
and sshd refuses the account outright (``DenyUsers`` in a drop-in), which also stops
``ssh -N`` tunnels that a nologin shell alone would let through. The drop-in is
checked by sshd on a copy of /etc/ssh with it in place (host keys too, in a root-only
temporary folder removed after) before it goes live, and refused, with what to do,
when that sshd would not read it (no ``Include`` of sshd_config.d, or an sshd older
than 8.2); then a running sshd is reloaded. The SSH user jupyterfab connects as is
never the notebook user (``schema.host_problems``), so the drop-in cannot lock it out.
"""

from __future__ import annotations

from typing import Any

DROP_IN = "/etc/ssh/sshd_config.d/00-jupyterfab-notebook-user.conf"
NOLOGIN = "/usr/sbin/nologin"
LOGIN_SHELL = "/bin/bash"


def drop_in_check(user: str) -> str:
    """The drop-in's check_cmd ({tree}: a copy of /etc/ssh with it in place): the whole
    configuration parses, and refuses ``user`` (sshd -T prints denyusers on one line)."""
    pattern = "^denyusers( [^ ]+)* " + user.replace(".", "\\.") + "( [^ ]+)*$"
    said = (f"sshd would not read {DROP_IN} (no Include of /etc/ssh/sshd_config.d/*.conf in "
            f"/etc/ssh/sshd_config, or an sshd older than 8.2), so it would not refuse {user}: add "
            f"'DenyUsers {user}' to /etc/ssh/sshd_config yourself, or set jupyter_user_login: true")
    return (f"sshd -t -f {{tree}}/sshd_config && {{ sshd -T -C user={user},host=localhost,addr=127.0.0.1 "
            f"-f {{tree}}/sshd_config | grep -Eq '{pattern}' || {{ echo \"{said}\" >&2; exit 1; }}; }}")


def template_vars(v: dict[str, Any]) -> dict[str, Any]:
    login = v["jupyter_user_login"]
    return {"jupyter_user_shell": LOGIN_SHELL if login else NOLOGIN, "sshd_drop_in": DROP_IN,
            "sshd_drop_in_check": drop_in_check(v["jupyter_user"])}
