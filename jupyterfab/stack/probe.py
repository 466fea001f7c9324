"""The deploy's first look at a host, in one round trip: OS, machine, Python, init
system, addresses, the deployed password hash, an environment from `fab upgrade`,
the installed certificate, free space and the notebook user."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from jupyterfab.engine import initsys
from jupyterfab.engine.facts import Fact, key_values
from jupyterfab.engine.shell import cmd
from jupyterfab.stack import diskspace, kernelenv
from jupyterfab.stack.envs import envlayout
from jupyterfab.stack.front import acme_preflight, tlsplan
from jupyterfab.stack.jupyter_versions import VERSIONS_SCRIPT, parse_versions

CONFIG_DIR = "/etc/jupyterfab"
CONFIG_FILE = f"{CONFIG_DIR}/jupyter_server_config.py"
# One empty file per notebook user jupyterfab created: only those may it change.
USER_MARKERS = "/var/lib/jupyterfab/notebook-users"
# Debian's python3 by release, for hosts where python3 is not installed yet.
DEBIAN_PYTHON = {"11": "3.9", "12": "3.11", "13": "3.13"}
# Ubuntu's, likewise: apt would install these (14.04 is the Upstart release).
UBUNTU_PYTHON = {"14.04": "3.4", "16.04": "3.5", "18.04": "3.6", "20.04": "3.8",
                 "22.04": "3.10", "24.04": "3.12"}


@dataclass(frozen=True)
class HostInfo(Fact):
    """What the deploy must know before rendering anything, in one round trip."""

    config_file: str = CONFIG_FILE
    env_dir: str = ""                   # the live environment: was it made by `fab upgrade`?
    tls_files: tuple[str, str] = ()     # the installed certificate and key, to keep or renew
    acme_certificate: str = ""          # certbot's live certificate: is it there yet?
    prefix: str = ""                    # free space there and in the config dirs (diskspace)
    notebook_user: str = ""             # does it exist; did jupyterfab create it?
    addresses: bool = True              # the host's public addresses (only Cloudflare needs them)
    # ACME before certbot's first run: is the name the host's, are its ports open
    # (acme_preflight.probe_args; empty: not asked)
    preflight_args: tuple[str, str, str] = ()

    SCRIPT = r"""
. /etc/os-release 2>/dev/null; echo "os=${ID:-unknown} ${VERSION_ID:-}"
echo "machine=$(uname -m)"
glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null); echo "glibc=${glibc#* }"
INIT
p=$(readlink -f "$(command -v python3)" 2>/dev/null) && echo "python=${p##*/python}"
# the addresses this host reaches the internet from (for Cloudflare's DNS records)
if [ -n "$9" ]; then
    ip -4 -o route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/ipv4=\1/p'
    ip -6 -o route get 2606:4700:4700::1111 2>/dev/null | sed -n 's/.* src \([0-9a-f:]*\).*/ipv6=\1/p'
fi
sed -n 's/^c\.PasswordIdentityProvider\.hashed_password = "\(argon2:[^"]*\)"$/hashed_password=\1/p' "$1" 2>/dev/null
if [ -n "$2" ] && [ -f "$2/PIN" ]; then
    echo "upgraded_to=$(cat "$2/PIN")"
    (set -- "$2"
VERSIONS
)
fi
if [ -n "$5" ] && [ -s "$5" ]; then echo "acme_live=1"; fi
if [ -n "${10}" ] && [ -n "$5" ] && [ ! -s "$5" ]; then
PREFLIGHT
fi
if [ -n "$6" ]; then (set -- "$6" "$7"
SPACE
); fi
if [ -n "$8" ] && u=$(getent passwd "$8"); then
    echo "notebook_user=$u"; echo "notebook_user_groups=$(id -Gn "$8" 2>/dev/null)"
    # made by jupyterfab: its marker, or (deployed before the marker) the config it owns
    if [ -e "MARKERS/$8" ] || [ "$(stat -c %U "$1" 2>/dev/null)" = "$8" ]; then
        echo "notebook_user_ours=yes"; fi
    # made already: a deploy then has no use for a kernel environment built here
    IFS=: read -r _ _ _ _ _ home _ <<EOF
$u
EOF
    k="$home/KERNEL_ENV/bin/python"
    if [ -e "$k" ] || [ -L "$k" ]; then echo "notebook_user_kernel_env=yes"; fi
fi
if [ -n "${10}" ] && [ -n "$5" ] && [ ! -s "$5" ]; then echo "%%firewall%%"
FIREWALL
fi
if [ -n "$3" ]; then echo "%%certificate%%"; cat "$3" 2>/dev/null; echo "%%jupyterfab%%"; cat "$4" 2>/dev/null; fi
true
""".replace("PIN", envlayout.UPGRADE_PIN).replace("VERSIONS\n", VERSIONS_SCRIPT).replace("INIT\n", initsys.DETECT).replace(
        "SPACE\n", diskspace.SCRIPT).replace("MARKERS", USER_MARKERS).replace(
        "KERNEL_ENV", kernelenv.KERNEL_ENV).replace("PREFLIGHT\n", acme_preflight.SCRIPT).replace(
        "FIREWALL\n", acme_preflight.FIREWALL_SCRIPT)

    def command(self):
        space = diskspace.paths(self.prefix) if self.prefix else ""
        return cmd("sh", "-c", self.SCRIPT, "sh", self.config_file, self.env_dir,
                   *(self.tls_files or ("", "")), self.acme_certificate, space, self.prefix,
                   self.notebook_user, "yes" if self.addresses else "",
                   *(self.preflight_args or ("", "", "")))

    def parse(self, stdout: str, rc: int) -> dict[str, Any]:
        stdout, _, certificate_files = stdout.partition("%%certificate%%\n")
        stdout, _, firewall_rules = stdout.partition("%%firewall%%\n")
        free_kb, env_ids = diskspace.parse(stdout.splitlines())
        found, info = initsys.parse(stdout), key_values(stdout)
        os_id, _, version = info.get("os", "unknown").partition(" ")
        glibc = tuple(int(x) for x in info.get("glibc", "2.17").split(".")[:2] if x.isdigit())
        return {
            "os_id": os_id, "os_version": version,
            "machine": info.get("machine", "x86_64"),
            "glibc": glibc if len(glibc) == 2 else (2, 17),
            "init": found.init or "none",
            "pid1": found.pid1,
            "python": info.get("python") or (UBUNTU_PYTHON if os_id == "ubuntu"
                                             else DEBIAN_PYTHON).get(version, ""),
            "hashed_password": info.get("hashed_password", ""),
            "ipv4": info.get("ipv4", ""),
            "ipv6": global_ipv6(info.get("ipv6", "")),
            "upgraded_to": info.get("upgraded_to") or None,
            "jupyterlab_installed": parse_versions(stdout)["jupyterlab"],
            "installed_certificate": tlsplan.parse_current_certificate(certificate_files),
            "acme_live": info.get("acme_live") == "1",
            "free_kb": free_kb, "env_ids": env_ids,
            "notebook_user": account(info),
            "acme_preflight": acme_preflight.parse(info, firewall_rules),
        }


def account(info: dict[str, str]) -> dict[str, Any] | None:
    """The notebook user's passwd entry and groups as the probe printed them; None if absent."""
    fields = info.get("notebook_user", "").split(":")
    if len(fields) < 7:
        return None
    return {"name": fields[0], "uid": int(fields[2]) if fields[2].isdigit() else -1,
            "home": fields[5], "groups": info.get("notebook_user_groups", "").split(),
            "ours": info.get("notebook_user_ours") == "yes",
            "kernel_env": info.get("notebook_user_kernel_env") == "yes"}


def global_ipv6(text: str) -> str:
    """Only an address the internet can reach belongs in an AAAA record."""
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        return ""
    return text if address.is_global else ""
