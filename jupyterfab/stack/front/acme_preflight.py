"""Before certbot first asks the CA for a name: does the name point at this host, and
do the host's own firewall rules leave open the ports the CA and the users need?

A failed validation costs a try against Let's Encrypt's rate limits and says little,
so the deploy asks first, from the host (its resolver, its rules, read and never
changed), in the probe it starts with (``SCRIPT`` runs there while the host has no
certificate for the name yet), and stops with one line saying what to point where.
A name in a Cloudflare zone is left alone: the deploy writes its record itself.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from jupyterfab.stack.front import firewall

# Run by the deploy's probe, as root, with $10 = yes, $11 = the name to resolve ("" when
# the deploy keeps its DNS record), $12 = the inventory address when it is a DNS name.
# DNS only (-s dns): an /etc/hosts line would say nothing of what the CA sees.
SCRIPT = r"""
resolve() { { getent -s dns ahostsv4 "$1"; getent -s dns hosts "$1"; } 2>/dev/null | awk '{print $1}' | sort -u | tr '\n' ' '; }
echo "acme_preflight=yes"
echo "acme_host_addresses=$(hostname -I 2>/dev/null)"
if [ -n "${11}" ]; then echo "acme_name_addresses=$(resolve "${11}")"; fi
if [ -n "${12}" ]; then echo "acme_ssh_addresses=$(resolve "${12}")"; fi
"""
# Printed last (after every key=value line): the rules as the tools print them.
FIREWALL_SCRIPT = r"""
if command -v nft >/dev/null 2>&1; then echo "%%nft%%"; nft list ruleset 2>/dev/null; fi
if grep -q . /proc/net/ip_tables_names 2>/dev/null || ! command -v nft >/dev/null 2>&1; then
    if command -v iptables-save >/dev/null 2>&1; then echo "%%iptables%%"; iptables-save 2>/dev/null; fi
fi
"""
AFTER = ("then deploy again (jupyterfab changed nothing and asked the CA for nothing)")


@dataclass(frozen=True)
class Found:
    """What the probe saw on the host."""

    host_addresses: tuple[str, ...]
    name_addresses: tuple[str, ...] | None      # None: not asked (the deploy keeps the record)
    ssh_addresses: tuple[str, ...]
    nft: str = ""
    iptables: str = ""


def probe_args(server_name: str, address: str, keeps_record: bool) -> tuple[str, str, str]:
    """$10-$12 of the probe for an ACME host."""
    return "yes", "" if keeps_record else server_name, "" if _ip(address) else address


def parse(info: dict[str, str], rules: str) -> Found | None:
    """The probe's key=value lines and its firewall section; None when it did not look
    (no ACME, or the certificate is there already)."""
    if info.get("acme_preflight") != "yes":
        return None
    nft, _, iptables = rules.partition("%%iptables%%\n")
    named = info.get("acme_name_addresses")
    return Found(host_addresses=tuple(info.get("acme_host_addresses", "").split()),
                 name_addresses=None if named is None else tuple(named.split()),
                 ssh_addresses=tuple(info.get("acme_ssh_addresses", "").split()),
                 nft=nft.removeprefix("%%nft%%\n"), iptables=iptables)


def problem(host_name: str, server_name: str, address: str, v: dict[str, Any], challenge: str,
            found: Found | None) -> str | None:
    """The one line that stops the deploy before certbot, or None when all is well."""
    if found is None:
        return None
    ours = _ours(address, v, found)
    said = [p for p in (_name_problem(server_name, host_name, ours, v, found),
                        _port_problem(host_name, challenge, found)) if p]
    return f"{'; '.join(said)}, {AFTER}" if said else None


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _ours(address: str, v: dict[str, Any], found: Found) -> list[str]:
    """The host's addresses, the one to point at first: public_ipv4 (behind NAT), the
    inventory's address, then what its interfaces have."""
    given = [v.get("public_ipv4", ""), v.get("public_ipv6", ""), address, *found.ssh_addresses,
             *found.host_addresses]
    ours: list[str] = []
    for text in given:
        ip = _ip(text)
        if ip and not ip.is_loopback and str(ip) not in ours:
            ours.append(str(ip))
    return ours


def _first(addresses: list[str], version: int) -> str:
    return next((a for a in addresses if ipaddress.ip_address(a).version == version), "")


def _name_problem(name: str, host_name: str, ours: list[str], v: dict[str, Any],
                  found: Found) -> str | None:
    if found.name_addresses is None:
        return None
    point = _first(ours, 4) or (ours[0] if ours else "this host's public address")
    record = "AAAA" if ":" in point else "A"
    if not found.name_addresses:
        return (f"{name} does not resolve (asked from {host_name}): give it an {record} record "
                f"pointing at {point}")
    wrong = [a for a in found.name_addresses if a not in ours]
    if not wrong:
        return None
    here = f"this host ({point})"
    if len(wrong) < len(found.name_addresses):
        return (f"{name} also resolves to {', '.join(wrong)}, which is not {here}: remove "
                f"that record, so the CA cannot ask there")
    fix = f"point its {record} record at {point}"
    if any(":" in a for a in wrong):
        v6 = _first(ours, 6)
        fix += f" and its AAAA record at {v6}" if v6 else " and remove its AAAA record"
    v4 = [a for a in wrong if ":" not in a]
    if v4 and not v.get("public_ipv4"):
        fix += f" (or, if {v4[0]} reaches this host through NAT, set public_ipv4: {v4[0]})"
    return f"{name} resolves to {', '.join(wrong)}, not to {here}: {fix}"


def _port_problem(host_name: str, challenge: str, found: Found) -> str | None:
    wanted = (80, 443) if challenge == "http-01" else (443,)
    closed = firewall.closed_ports(found.nft, found.iptables, wanted)
    if not closed:
        return None
    tool = firewall.which_tool(found.nft, found.iptables)
    ports = " and ".join(f"{p}/tcp" for p in wanted)
    how = {"ufw": f"ufw allow {','.join(map(str, wanted))}/tcp"}.get(tool, f"a rule in its {tool} ruleset")
    why = "the CA's check and the users" if 80 in closed else "the users"
    which = "port" if len(closed) == 1 else "ports"
    return (f"{host_name}'s firewall ({tool}) closes {which} {' and '.join(map(str, closed))}, which "
            f"{why} need: open {ports} to the internet ({how})")
