"""hosts.yaml: the inventory, validated once at load with errors a person can act on.

Settings merge in this order, later wins: code defaults < ``defaults`` <
each group the host is in (in the order listed) < the host < the command line.
Every error names the file, the line and the key, and is raised before any
host is contacted. Secrets never live here: they come from the environment,
a prompt or a 0600 file (see ``jupyterfab.secrets``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import acme
from .errors import ConfigError

# Variables the states and templates use, with their defaults and types.
VAR_DEFAULTS: dict[str, Any] = {
    "server_name": "jupyter.example.com",   # the public hostname NGINX answers to
    "public_url": "",                        # default: http(s)://server_name
    "jupyter_user": "jupyter",
    "notebook_dir": "/home/jupyter/notebooks",
    "prefix": "/opt/jupyterfab",             # the Python environment lives under it
    "jupyter_port": 8888,
    "jupyterlab_version": "==4.4.*",
    "jupyter_server_version": ">=2.14,<3",
    "python_packages": [],                   # seeds the user's kernel environment (a deploy adds
                                             # the missing ones, never removes what the user installed)
    "server_packages": [],                   # extra packages for the server's environment
                                             # (Jupyter Server and JupyterLab extensions)
    "resource_usage": True,                  # jupyter-resource-usage: memory/CPU in JupyterLab's status bar
    "jupyterlab_settings": {},               # JupyterLab setting defaults: {plugin id: {setting: value}}
    # Limits (systemd hosts; 0 or "" turns each off). MemoryMax/TasksMax bound Jupyter
    # and its kernels together, leaving the rest of the RAM to sshd, NGINX and the system.
    "memory_max": "75%",                     # MemoryMax=: "75%" of RAM, "2G", "512M"
    "tasks_max": 4096,                       # TasksMax=: processes and threads
    "oom_score_adj": -100,                   # the server's OOMScoreAdj= (-1000..1000)
    "kernel_oom_score_adj": 500,             # each kernel's own oom_score_adj: kernels die first
    "cull_idle_timeout": 3600,               # seconds: shut down kernels idle this long (busy ones never)
    "cull_connected": False,                 # also cull idle kernels a browser tab is still connected to
    "nodelay": True,                         # TCP_NODELAY on Jupyter's WebSockets (jupyterfab_nodelay);
                                             # false: Nagle on, as stock Jupyter (for comparison)
    "client_max_body_size": "100M",
    "proxy_read_timeout": 86400,            # seconds; kernels idle for hours keep their socket
    "login_rate_per_minute": 10,             # password posts per client address (NGINX limit_req)
    "login_burst": 10,                       # posts beyond the rate before 429 (refills at the rate)
    "nginx_worker_shutdown_timeout": 30,     # seconds an old NGINX worker keeps its sockets after a reload
    "apt_proxy": "",                         # e.g. http://apt-cache.lan:3142
    "wheelhouse": "",                        # local dir of wheels uploaded for offline hosts
    "pip_index_url": "",
    "pip_installer": "uv",                   # uv (fast) or pip, for the Python environment
    "build_env_here": 1,                     # 1: with a wheelhouse and the same Python here,
                                             # build the environment once here, unpack on hosts
    "env_provider": "venv",                  # venv, or conda (Miniforge/Miniconda; see below)
    # env_provider: conda. The installer is an https URL (downloaded on the host)
    # or a file on this machine (uploaded); its sha256 is required and checked
    # before it runs.
    "conda_installer": "",
    "conda_installer_sha256": "",
    "conda_prefix": "/opt/jupyterfab/conda",
    "conda_environment": "jupyter/environment.yml.j2",   # in files/: the server's environment
    "conda_packages": ["nb_conda_kernels"],  # conda packages for the server's environment
    "conda_kernel_environments": [],         # more environments, templates in files/ (NAME.yml.j2)
    # Cloudflare and TLS (see jupyterfab/edge.py). The API token is never here:
    # $CLOUDFLARE_API_TOKEN or --cloudflare-token-file.
    "cloudflare_zone": "",                   # e.g. example.com: manage DNS, TLS mode, lockdown
    "cloudflare_proxied": True,              # orange cloud; false = DNS-only (needs your own cert)
    "cloudflare_api_url": "",                # another API endpoint (a proxy, a test stand-in)
    "origin_lockdown": True,                 # proxied: NGINX admits Cloudflare's ranges only
    "authenticated_origin_pulls": False,     # proxied: NGINX also demands Cloudflare's client cert
    "origin_pull_ca": "",                    # local path of Cloudflare's origin-pull CA (for the above)
    "public_ipv4": "",                       # for the A record; default: the address, or detected
    "public_ipv6": "",                       # for the AAAA record; default: detected, if any
    "tls_certificate": "",                   # local paths of your own certificate and key;
    "tls_key": "",                           # default with Cloudflare: an Origin CA certificate
    # TLS without Cloudflare's proxy or an own certificate: ACME (see jupyterfab/acme.py).
    "tls": "auto",                           # auto: own > Origin CA (proxied) > acme (public name)
                                             # > refused; acme: always ACME; off: plain HTTP
    "acme_email": "",                        # the CA's contact for expiry notices; required for acme
    "acme_server": "letsencrypt",            # letsencrypt, staging, or an ACME directory https URL
    "acme_challenge": "auto",                # auto: dns-01 with cloudflare_zone, else http-01
    "acme_dns_propagation_seconds": 10,      # dns-01: wait after publishing the TXT record
    "acme_ca_bundle": "",                    # local PEM file the host's certbot trusts for
                                             # acme_server (a test CA such as Pebble's); tests only
    "allow_plain_http": False,               # serve Jupyter over plain HTTP (password in clear text)
}
VAR_TYPES: dict[str, tuple[type, ...]] = {
    k: ((list,) if isinstance(v, list) else (dict,) if isinstance(v, dict)
        else (bool,) if isinstance(v, bool) else (int,) if isinstance(v, int) else (str,))
    for k, v in VAR_DEFAULTS.items()
}
VAR_TYPES["memory_max"] = (str, int)          # 0 turns it off, like the numbers beside it
VAR_CHOICES = {"env_provider": ("venv", "conda"), "pip_installer": ("uv", "pip"), "build_env_here": (0, 1),
               "tls": ("auto", "acme", "off"), "acme_challenge": ("auto", "http-01", "dns-01")}
# Values that look like secrets are refused here: they'd end up in version control.
SECRET_KEYS = re.compile(r"(password|passwd|secret|token|api_key|private_key)", re.I)

CONNECTION_KEYS: dict[str, tuple[type, ...]] = {
    "user": (str,), "port": (int,), "key": (str,), "known_hosts": (str,),
}
HOST_KEYS = {"address": (str,), "groups": (list,), "vars": (dict,), **CONNECTION_KEYS}
GROUP_KEYS = {"vars": (dict,), **CONNECTION_KEYS}
DEFAULTS_KEYS = {"vars": (dict,), **CONNECTION_KEYS}
TOP_KEYS = {"defaults": (dict,), "groups": (dict,), "hosts": (dict,)}

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class InventoryError(ConfigError):
    """A problem in the inventory; the message names file, line and key."""


@dataclass
class Host:
    name: str
    address: str
    user: str = "root"
    port: int = 22
    key: str = ""
    known_hosts: str = ""
    groups: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"


@dataclass
class Inventory:
    path: Path | None
    hosts: dict[str, Host]
    groups: dict[str, list[str]]
    defaults: dict[str, Any] = field(default_factory=dict)

    def select(self, patterns: list[str], *, group: str | None = None,
               overrides: dict[str, Any] | None = None) -> list[Host]:
        """Hosts named on the command line: inventory names, or ``user@host[:port]``."""
        chosen: list[Host] = []
        if group:
            if group not in self.groups:
                raise InventoryError(f"{self.path}: no group named {group!r}"
                                     f"{_suggest(group, self.groups)}")
            chosen += [self.hosts[n] for n in self.groups[group]]
        for pattern in patterns:
            if pattern in self.hosts:
                chosen.append(self.hosts[pattern])
            else:
                chosen.append(self._ad_hoc(pattern))
        if overrides:
            validate_vars(overrides, ("--set",))
            for host in chosen:
                host.vars.update(overrides)
                check_provider(host.vars, ("--set",), host=host.name)
        return chosen

    def _ad_hoc(self, target: str) -> Host:
        m = re.fullmatch(r"(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]]+\]|[^:@\s]+)(?::(?P<port>\d+))?", target)
        if not m or (not m.group("user") and not m.group("port") and "." not in target
                     and not _looks_like_ip(target)):
            raise InventoryError(
                f"unknown host {target!r}: not in {self.path or 'the inventory'}"
                f"{_suggest(target, self.hosts)} (a plain address works too: user@host[:port])")
        base = _merge_host_settings(self.defaults, [], {}, {})
        check_provider(base["vars"], ("defaults", "vars", "env_provider"), host=target)
        return Host(name=m.group("host").strip("[]"), address=m.group("host").strip("[]"),
                    user=m.group("user") or base["user"], port=int(m.group("port") or base["port"]),
                    key=base.get("key", ""), known_hosts=base.get("known_hosts", ""),
                    vars=dict(base["vars"]))


def _looks_like_ip(text: str) -> bool:
    return bool(re.fullmatch(r"[\d.]+|[0-9a-fA-F:]+", text))


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --------------------------------------------------------------------------- YAML with lines

class _Located:
    """Python values from YAML, plus the line of every mapping key, by key path."""

    def __init__(self) -> None:
        self.lines: dict[tuple, int] = {}
        self._scalars = yaml.SafeLoader("")

    def build(self, node, path: tuple, source: str) -> Any:
        if isinstance(node, yaml.MappingNode):
            out: dict = {}
            for key_node, value_node in node.value:
                key = key_node.value
                line = key_node.start_mark.line + 1
                if key in out:
                    raise InventoryError(f"{source}:{line}: key {'.'.join(map(str, path + (key,)))!r} "
                                         "appears twice")
                self.lines[path + (key,)] = line
                out[key] = self.build(value_node, path + (key,), source)
            self.lines.setdefault(path, node.start_mark.line + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            self.lines.setdefault(path, node.start_mark.line + 1)
            return [self.build(v, path + (i,), source) for i, v in enumerate(node.value)]
        self.lines.setdefault(path, node.start_mark.line + 1)
        return self._scalars.construct_object(node, deep=True)


def load(path: str | Path) -> Inventory:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InventoryError(f"cannot read inventory {path}: {exc.strerror}") from None
    return parse(text, str(path), base=path.parent)


def parse(text: str, source: str = "hosts.yaml", base: Path | None = None) -> Inventory:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        raise InventoryError(f"{where}: not valid YAML: {exc.problem or exc}") from None
    located = _Located()
    data = located.build(node, (), source) if node is not None else {}
    if data is None:
        data = {}

    def where(*key) -> str:
        line = located.lines.get(tuple(key))
        while line is None and key:
            key = key[:-1]
            line = located.lines.get(tuple(key))
        return f"{source}:{line}" if line else source

    def fail(key: tuple, message: str):
        raise InventoryError(f"{where(*key)}: {'.'.join(map(str, key))}: {message}")

    if not isinstance(data, dict):
        raise InventoryError(f"{source}: the inventory must be a mapping with hosts:, groups:, defaults:")
    _check_keys(data, TOP_KEYS, (), fail)
    defaults = data.get("defaults") or {}
    _check_keys(defaults, DEFAULTS_KEYS, ("defaults",), fail)
    validate_vars(defaults.get("vars") or {}, ("defaults", "vars"), fail)

    groups_raw = data.get("groups") or {}
    for gname, group in groups_raw.items():
        if not NAME_RE.match(str(gname)):
            fail(("groups", gname), "a group name uses letters, digits, '.', '_' and '-'")
        group = group or {}
        if not isinstance(group, dict):
            fail(("groups", gname), "must be a mapping (vars:, user:, ...)")
        _check_keys(group, GROUP_KEYS, ("groups", gname), fail)
        validate_vars(group.get("vars") or {}, ("groups", gname, "vars"), fail)

    hosts: dict[str, Host] = {}
    members: dict[str, list[str]] = {g: [] for g in groups_raw}
    hosts_raw = data.get("hosts") or {}
    if not hosts_raw:
        raise InventoryError(f"{where('hosts')}: hosts: the inventory names no hosts")
    for hname, spec in hosts_raw.items():
        key = ("hosts", hname)
        if not NAME_RE.match(str(hname)):
            fail(key, "a host name uses letters, digits, '.', '_' and '-'")
        spec = spec or {}
        if not isinstance(spec, dict):
            fail(key, "must be a mapping with at least address:")
        _check_keys(spec, HOST_KEYS, key, fail)
        if not spec.get("address"):
            fail(key + ("address",), "is required (an IP address or DNS name to SSH to)")
        if not re.fullmatch(r"[A-Za-z0-9.:_-]+", spec["address"]):
            fail(key + ("address",), f"{spec['address']!r} is not a host name or IP address")
        host_groups = spec.get("groups") or []
        for i, g in enumerate(host_groups):
            if g not in groups_raw:
                # a group with no settings needs no entry under groups:
                if not isinstance(g, str) or not NAME_RE.match(g):
                    fail(key + ("groups", i), f"{g!r} is not a group name")
                members.setdefault(g, [])
            members[g].append(hname)
        validate_vars(spec.get("vars") or {}, key + ("vars",), fail)
        merged = _merge_host_settings(defaults, [groups_raw.get(g) or {} for g in host_groups],
                                      spec, {})
        var_layers = [(("defaults", "vars"), defaults.get("vars") or {}),
                      *((("groups", g, "vars"), (groups_raw.get(g) or {}).get("vars") or {})
                        for g in host_groups),
                      (key + ("vars",), spec.get("vars") or {})]
        setters = [path for path, layer in var_layers if "env_provider" in layer]
        check_provider(merged["vars"], setters[-1] + ("env_provider",) if setters else key, fail,
                       host=hname)
        installer = merged["vars"].get("conda_installer", "")
        if installer and "://" not in installer and base is not None:
            # like key:, a relative path is relative to the inventory file
            merged["vars"]["conda_installer"] = str((base / Path(installer).expanduser()).resolve())
        bundle = merged["vars"].get("acme_ca_bundle", "")
        if bundle and base is not None:
            merged["vars"]["acme_ca_bundle"] = str((base / Path(bundle).expanduser()).resolve())
        for k in ("key", "known_hosts"):
            if merged.get(k) and base is not None:
                merged[k] = str((base / Path(merged[k]).expanduser()).resolve()) \
                    if not Path(merged[k]).expanduser().is_absolute() else str(Path(merged[k]).expanduser())
        hosts[hname] = Host(name=hname, address=spec["address"], user=merged["user"],
                            port=merged["port"], key=merged.get("key", ""),
                            known_hosts=merged.get("known_hosts", ""),
                            groups=list(host_groups), vars=merged["vars"])
    return Inventory(path=Path(source) if source else None, hosts=hosts, groups=members,
                     defaults=defaults)


def _check_keys(mapping: dict, allowed: dict[str, tuple[type, ...]], path: tuple, fail) -> None:
    for k, v in mapping.items():
        if k not in allowed:
            fail(path + (k,), f"unknown key{_suggest(str(k), allowed)}; "
                              f"allowed here: {', '.join(allowed)}")
        if v is not None and not isinstance(v, allowed[k]) or isinstance(v, bool) and bool not in allowed[k]:
            fail(path + (k,), f"must be {_type_name(allowed[k])}, not {_type_name((type(v),))}")


def _fail_without_file(key: tuple, message: str):
    raise InventoryError(f"{'.'.join(map(str, key))}: {message}")


def validate_vars(variables: dict, path: tuple, fail=_fail_without_file) -> None:
    """Known names, right types, no secrets; ``fail(key_path, message)`` raises."""
    for k, v in variables.items():
        key = path + (k,)
        if SECRET_KEYS.search(str(k)):
            fail(key, "secrets never live in hosts.yaml: pass the Jupyter password with "
                      "JUPYTERFAB_PASSWORD, --password-file (mode 0600) or the prompt")
        if str(k).startswith("x_"):
            continue   # free-form variables for the user's own states
        if k not in VAR_DEFAULTS:
            fail(key, f"unknown variable{_suggest(str(k), VAR_DEFAULTS)} "
                      "(your own variables for your own states start with x_)")
        if not isinstance(v, VAR_TYPES[k]) or (isinstance(v, bool) and bool not in VAR_TYPES[k]):
            fail(key, f"must be {_type_name(VAR_TYPES[k])}, not {_type_name((type(v),))}")
        if k in VAR_CHOICES and v not in VAR_CHOICES[k]:
            fail(key, f"must be one of {', '.join(VAR_CHOICES[k])}")
        problem = VAR_CHECKS[k](v) if k in VAR_CHECKS else None
        if problem:
            fail(key, problem)


# --- values with a shape ----------------------------------------------------------------

def _installer(value: str) -> str | None:
    if "\n" in value or ("://" in value and not value.startswith(("https://", "http://"))):
        return "give the installer's https URL or a path to it on this machine"
    return None


def _sha256(value: str) -> str | None:
    if value and not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        return "must be the installer's sha256: 64 hex digits (sha256sum INSTALLER)"
    return None


def _prefix(value: str) -> str | None:
    # conda's installers refuse spaces; systemd's ExecStart would split on them too
    if not re.fullmatch(r"/[A-Za-z0-9._+/-]*[A-Za-z0-9._+-]", value) or "/../" in value + "/":
        return "must be an absolute path without spaces (e.g. /opt/jupyterfab/conda)"
    return None


def _template(value: str) -> str | None:
    if not value or value.startswith("/") or ".." in value.split("/") or "\n" in value:
        return "must be a template path inside files/ (e.g. jupyter/environment.yml.j2)"
    return None


def conda_env_name(template: str) -> str:
    """analysis.yml.j2 -> analysis: the environment a kernel template makes."""
    base = template.rsplit("/", 1)[-1]
    for suffix in (".j2", ".yml", ".yaml"):
        base = base.removesuffix(suffix)
    return base


def _kernel_environments(value: list) -> str | None:
    names = []
    for item in value:
        if not isinstance(item, str) or _template(item):
            return f"{item!r}: each item is a template path inside files/ (e.g. conda/analysis.yml.j2)"
        name = conda_env_name(item)
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name) or name in ("jupyter", "base"):
            return (f"{item!r}: the environment is named after the file ({name!r}), which must "
                    "use letters, digits, '.', '_', '-' and not be jupyter or base")
        if name in names:
            return f"two templates make the environment {name!r}"
        names.append(name)
    return None


def _requirements(value: list) -> str | None:
    for item in value:
        if not isinstance(item, str) or not item.strip() or item.strip().startswith("-") or "\n" in item:
            return f"{item!r} is not a pip requirement (e.g. pandas or 'numpy>=1.26')"
    return None


def _conda_packages(value: list) -> str | None:
    for item in value:
        if not isinstance(item, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.=<>!*,|-]*", item):
            return f"{item!r} is not a conda package spec (e.g. nb_conda_kernels or numpy>=1.26)"
    return None


def _memory_max(value: str | int) -> str | None:
    if value in (0, "", "0") or re.fullmatch(r"(100|[1-9]?[0-9])(\.[0-9]+)?%|[1-9][0-9]*[KMGT]?", str(value)):
        return None
    return 'must be a share of RAM ("75%"), a size ("2G", "512M"), or 0 to turn it off'


def _oom_score_adj(value: int) -> str | None:
    return None if -1000 <= value <= 1000 else "must be between -1000 and 1000 (0: off)"


def _lab_settings(value: dict) -> str | None:
    for plugin, settings in value.items():
        if not isinstance(settings, dict) or ":" not in str(plugin):
            return (f"{plugin!r}: give each plugin's settings as a mapping under its id, e.g. "
                    "'@jupyterlab/apputils-extension:themes': {theme: JupyterLab Dark}")
    return None


def _positive(value: int) -> str | None:
    return None if value > 0 else "must be a whole number above 0"


def _not_negative(value: int) -> str | None:
    return None if value >= 0 else "must be a whole number, 0 or more"


VAR_CHECKS = {"login_rate_per_minute": _positive, "login_burst": _not_negative,
              "nginx_worker_shutdown_timeout": _positive,
              "conda_installer": _installer, "conda_installer_sha256": _sha256,
              "conda_prefix": _prefix, "conda_environment": _template,
              "conda_kernel_environments": _kernel_environments,
              "conda_packages": _conda_packages,
              "acme_server": acme.check_server, "acme_email": acme.check_email,
              "acme_dns_propagation_seconds": _not_negative,
              "memory_max": _memory_max, "tasks_max": _not_negative, "cull_idle_timeout": _not_negative,
              "oom_score_adj": _oom_score_adj, "kernel_oom_score_adj": _oom_score_adj,
              "jupyterlab_settings": _lab_settings, "server_packages": _requirements,
              "python_packages": _requirements}


def check_provider(variables: dict, provider_key: tuple, fail=_fail_without_file,
                   host: str = "") -> None:
    """A host's merged variables: conda needs its installer and that installer's sha256.
    ``provider_key`` is where env_provider was set, for the error's file:line."""
    if variables.get("env_provider") != "conda":
        return
    for k, why in (("conda_installer", "the Miniforge/Miniconda installer: an https URL or a "
                                       "file on this machine"),
                   ("conda_installer_sha256", "the installer's sha256, checked before it runs "
                                              "(published beside the installer, or sha256sum it)")):
        if not variables.get(k):
            fail(provider_key, f"conda needs {k} ({why})" + (f", for host {host}" if host else ""))


def _type_name(types: tuple[type, ...]) -> str:
    names = {str: "a string", int: "a number", list: "a list", dict: "a mapping",
             bool: "true/false", type(None): "empty", float: "a number"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _merge_host_settings(defaults: dict, groups: list[dict], host: dict, cli: dict) -> dict:
    merged: dict[str, Any] = {"user": "root", "port": 22, "vars": dict(VAR_DEFAULTS)}
    for layer in (defaults, *groups, host, cli):
        for k, v in layer.items():
            if k == "vars":
                merged["vars"].update(v or {})
            elif k in CONNECTION_KEYS and v is not None:
                merged[k] = v
    return merged
