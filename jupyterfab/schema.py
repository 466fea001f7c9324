"""Every inventory variable as data: its type, default, allowed form, an example and
what it is for. ``inventory`` checks hosts.yaml and ``--set`` against it; the
README's variable reference is generated from it (``reference_table``), so the
two cannot drift.

A check returns None when the value is good, else the expected form (the
inventory prefixes ``file:line: key``). Checks that need several variables of
one host (``notebook_dir`` under the notebook user's home, the port against the
SSH port) are ``host_problems``; they run once the host's layers are merged.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from . import acme, kernelenv

Check = Callable[[Any], "str | None"]

# Cloudflare's API; another endpoint (a stand-in, a proxy) only from the command
# line or this environment variable, never from a file that may be shared.
CLOUDFLARE_API_URL = "https://api.cloudflare.com/client/v4"
CLOUDFLARE_API_URL_ENV = "JUPYTERFAB_CLOUDFLARE_API_URL"

# Directories the deploy must never own, chown or put a venv straight into.
SYSTEM_DIRS = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32",
    "/media", "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp",
    "/usr", "/usr/bin", "/usr/lib", "/usr/local", "/usr/local/bin", "/usr/sbin", "/usr/share",
    "/var", "/var/lib", "/var/log", "/var/tmp",
})
# Accounts Debian and Ubuntu create: never the notebook user.
SYSTEM_ACCOUNTS = frozenset({
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp",
    "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody", "_apt", "messagebus",
    "sshd", "systemd-network", "systemd-resolve", "systemd-timesync", "systemd-coredump",
    "syslog", "postfix", "ntp", "ubuntu", "debian", "admin", "nginx", "polkitd",
})
# Membership in one of these is administrator power: never the notebook user's.
ADMIN_GROUPS = ("root", "sudo", "adm", "wheel", "admin", "shadow", "disk", "docker", "lxd")

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_SAFE_PATH = re.compile(r"/[A-Za-z0-9._+@=,~/-]*")   # no '%': a systemd specifier
_URL_PATH = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")


def has_control(value: str) -> bool:
    return bool(_CONTROL.search(value))


def is_hostname(value: str) -> bool:
    """RFC 1123: dot-separated labels of letters, digits and inner hyphens, 253 at most."""
    return len(value) <= 253 and bool(_HOSTNAME.fullmatch(value))


# Names that can never get a certificate from a public CA (RFC 2606, 6761, 6762,
# 7686, 8375): a host named so gets plain HTTP by default, never an ACME attempt.
SPECIAL_SUFFIXES = ("localhost", "local", "test", "invalid", "example", "internal", "lan",
                     "home", "corp", "localdomain", "home.arpa", "onion",
                     "example.com", "example.net", "example.org")



def is_public_name(name: str) -> bool:
    """A DNS name a public CA could issue for: a host name of two labels or more, not
    an IP address, not under a special-use or documentation domain."""
    name = name.strip().rstrip(".").lower()
    try:
        ipaddress.ip_address(name)
        return False
    except ValueError:
        pass
    labels = name.split(".")
    return (is_hostname(name) and len(labels) >= 2 and not labels[-1].isdigit()
            and not any(name == s or name.endswith("." + s) for s in SPECIAL_SUFFIXES))


# --- checks: None when good, else the expected form ---------------------------------

def hostname(value: str) -> str | None:
    if not is_hostname(value):
        return "must be a host name (RFC 1123: letters, digits, '-' and '.', e.g. jupyter.example.com)"
    return None


def zone(value: str) -> str | None:
    if value and (not is_hostname(value) or "." not in value):
        return "must be a domain name such as example.com"
    return None


def absolute_path(value: str) -> str | None:
    if not _SAFE_PATH.fullmatch(value):
        return ("must be an absolute path of letters, digits and ._+@=,~/- "
                "(no spaces, quotes or control characters)")
    if posixpath.normpath(value) != value or ".." in value.split("/") or "//" in value:
        return f"must be a normalised absolute path (e.g. {posixpath.normpath(value)!r}), without '..'"
    return None


def own_directory(value: str) -> str | None:
    """A directory jupyterfab creates and owns: a normalised path, and not a system directory."""
    problem = absolute_path(value)
    if problem:
        return problem
    if value in SYSTEM_DIRS:
        return f"{value} is a system directory: give a directory of its own (e.g. /opt/jupyterfab)"
    return None


def local_path(value: str) -> str | None:
    """A path on this machine (the controller); ~ is allowed."""
    if has_control(value):
        return "must be a file path on this machine, without control characters"
    return None


def http_url(value: str, *, origin_only: bool = False) -> str | None:
    expected = ("an http(s) origin such as https://jupyter.example.com" if origin_only
                else "an http:// or https:// URL such as http://apt-cache.lan:3142")
    if not value:
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return f"must be {expected}"
    host = parts.hostname or ""
    if (parts.scheme not in ("http", "https") or not host or parts.username or parts.password
            or parts.query or parts.fragment or has_control(value) or " " in value
            or not _URL_PATH.fullmatch(parts.path) or (port is not None and not 0 < port < 65536)):
        return f"must be {expected}"
    if not is_hostname(host):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return f"must be {expected} ({host!r} is not a host name or IP address)"
    if origin_only and parts.path not in ("", "/"):
        return f"must be {expected}, without a path (it is the origin browsers send)"
    return None


def cloudflare_api_url(value: str) -> str | None:
    if value and value.rstrip("/") != CLOUDFLARE_API_URL:
        return (f"must be Cloudflare's API, {CLOUDFLARE_API_URL} (the API token goes there); "
                f"another endpoint only from the command line (--set cloudflare_api_url=URL) "
                f"or ${CLOUDFLARE_API_URL_ENV}")
    return None


def override_api_url(value: str) -> str | None:
    """--set and the environment may point elsewhere, but only over https (the token goes
    along), or plain http to this machine or to a private address given as an IP (a
    stand-in on a test bridge that the host reaches too, as the ACME DNS-01 tests use)."""
    problem = http_url(value)
    if problem:
        return problem
    parts = urlsplit(value)
    if parts.scheme != "https":
        try:
            address = ipaddress.ip_address(parts.hostname or "")
            nearby = address.is_loopback or address.is_private
        except ValueError:
            nearby = parts.hostname == "localhost"
        if not nearby:
            return ("must be an https:// URL: the API token is sent there "
                    "(plain http only to this machine or a private IP address)")
    return None


def ip_version(version: int) -> Check:
    def check(value: str) -> str | None:
        if not value:
            return None
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return f"must be an IPv{version} address (e.g. {'203.0.113.10' if version == 4 else '2001:db8::10'})"
        if address.version != version:
            return f"must be an IPv{version} address, not IPv{address.version}"
        return None
    return check


def user_name(value: str) -> str | None:
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", value):
        return "must be a user name (lower-case letters, digits, '_' and '-', e.g. jupyter)"
    if value in SYSTEM_ACCOUNTS:
        return (f"{value!r} is a system account: the notebook user is an unprivileged account "
                "jupyterfab creates (e.g. jupyter)")
    return None


def version_spec(value: str) -> str | None:
    problem = "must be a PEP 440 version specifier such as ==4.4.* or >=2.14,<3"
    if not value.strip() or has_control(value):
        return problem
    try:
        SpecifierSet(value)
        requirement = Requirement(f"package{value}")
    except (InvalidSpecifier, InvalidRequirement):
        return problem
    if requirement.url or requirement.marker or requirement.extras:
        return problem
    return None


def requirements_list(value: list, allow_urls: bool = False) -> str | None:
    for item in value:
        if not isinstance(item, str) or has_control(item) or item.strip().startswith("-"):
            return f"{item!r} is not a pip requirement (PEP 508, e.g. numpy>=1.26)"
        try:
            requirement = Requirement(item)
        except InvalidRequirement:
            return f"{item!r} is not a pip requirement (PEP 508, e.g. numpy>=1.26)"
        if requirement.url and not allow_urls:
            return (f"{item!r} installs from a URL, as root: allow it with "
                    "allow_url_requirements: true")
    return None


def nginx_size(value: str) -> str | None:
    if not re.fullmatch(r"[0-9]{1,10}[kKmMgG]?", value):
        return "must be an NGINX size: a number with an optional k, m or g (e.g. 100M)"
    return None


def between(low: int, high: int) -> Check:
    def check(value: int) -> str | None:
        if not low <= value <= high:
            return f"must be between {low} and {high}"
        return None
    return check


def positive(value: int) -> str | None:
    return None if value > 0 else "must be a whole number above 0"


def not_negative(value: int) -> str | None:
    return None if value >= 0 else "must be a whole number, 0 or more"


def memory_max(value: str | int) -> str | None:
    if value in (0, "", "0") or re.fullmatch(r"(100|[1-9]?[0-9])(\.[0-9]+)?%|[1-9][0-9]*[KMGT]?", str(value)):
        return None
    return 'must be a share of RAM ("75%"), a size ("2G", "512M"), or 0 to turn it off'


def lab_settings(value: dict) -> str | None:
    for plugin, settings in value.items():
        if not isinstance(settings, dict) or ":" not in str(plugin):
            return (f"{plugin!r}: give each plugin's settings as a mapping under its id, e.g. "
                    "'@jupyterlab/apputils-extension:themes': {theme: JupyterLab Dark}")
    return None


def port(value: int) -> str | None:
    if not 1024 <= value <= 65535:
        return "must be a port between 1024 and 65535 (Jupyter listens on 127.0.0.1 only)"
    return None


def sha256(value: str) -> str | None:
    if value and not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        return "must be the installer's sha256: 64 hex digits (sha256sum INSTALLER)"
    return None


def installer(value: str) -> str | None:
    if has_control(value) or ("://" in value and not value.startswith(("https://", "http://"))):
        return "give the installer's https URL or a path to it on this machine"
    if value.startswith(("https://", "http://")):
        return http_url(value)
    return None


def template(value: str) -> str | None:
    if (not value or value.startswith("/") or ".." in value.split("/")
            or not re.fullmatch(r"[A-Za-z0-9._/-]+", value)):
        return "must be a template path inside files/ (e.g. jupyter/environment.yml.j2)"
    return None


def conda_env_name(template_path: str) -> str:
    """analysis.yml.j2 -> analysis: the environment a kernel template makes."""
    base = template_path.rsplit("/", 1)[-1]
    for suffix in (".j2", ".yml", ".yaml"):
        base = base.removesuffix(suffix)
    return base


def kernel_environments(value: list) -> str | None:
    names = []
    for item in value:
        if not isinstance(item, str) or template(item):
            return f"{item!r}: each item is a template path inside files/ (e.g. conda/analysis.yml.j2)"
        name = conda_env_name(item)
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name) or name in ("jupyter", "base"):
            return (f"{item!r}: the environment is named after the file ({name!r}), which must "
                    "use letters, digits, '.', '_', '-' and not be jupyter or base")
        if name in names:
            return f"two templates make the environment {name!r}"
        names.append(name)
    return None


def conda_packages(value: list) -> str | None:
    for item in value:
        if not isinstance(item, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.=<>!*,|-]*", item):
            return f"{item!r} is not a conda package spec (e.g. nb_conda_kernels or numpy>=1.26)"
    return None


def conda_channels(value: list) -> str | None:
    if not value:
        return "give at least one channel (conda-forge, or a mirror's URL)"
    for item in value:
        if not isinstance(item, str) or not re.fullmatch(
                r"(https?|file)://[^\s'\"]+|[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_.-]+)*", item):
            return f"{item!r} is not a conda channel (a name like conda-forge, or an http(s) URL)"
    return None


def wheelhouse(value: str) -> str | None:
    return None if value == "build" else local_path(value)


# --- the variables -------------------------------------------------------------------

@dataclass(frozen=True)
class Var:
    default: Any
    description: str
    example: Any
    check: Check | None = None
    choices: tuple = ()
    kinds: tuple = ()            # the types allowed, when not just the default's

    @property
    def types(self) -> tuple[type, ...]:
        return self.kinds or (type(self.default),)

    @property
    def form(self) -> str:
        """The allowed form in a few words, for the reference table."""
        if self.choices:
            return " or ".join(map(str, self.choices))
        return FORMS.get(self.check, {list: "a list", bool: "true or false", int: "a number",
                                      str: "a string", dict: "a mapping"}[self.types[0]])


VARIABLES: dict[str, Var] = {
    "server_name": Var("jupyter.example.com", "the public host name NGINX answers to",
                       "jupyter.example.com", hostname),
    "public_url": Var("", "the URL people open; default http(s)://server_name",
                      "https://notebooks.example.org", lambda v: http_url(v, origin_only=True)),
    "jupyter_user": Var("jupyter", "the unprivileged account that runs Jupyter and owns the "
                                   "notebooks; jupyterfab creates it", "jupyter", user_name),
    "jupyter_user_login": Var(False, "let the notebook account log in (false: its shell is "
                              "nologin and sshd refuses it, so an authorized_keys written by notebook "
                              "code opens nothing; Jupyter's terminals still run bash)", True),
    "notebook_dir": Var("/home/jupyter/notebooks", "where the notebooks live: inside the "
                        "notebook user's home, created once and never touched again",
                        "/home/jupyter/notebooks", own_directory),
    "prefix": Var("/opt/jupyterfab", "where the Python environments live (not inside the "
                  "notebook user's home)", "/opt/jupyterfab", own_directory),
    "jupyter_port": Var(8888, "Jupyter's port on 127.0.0.1 (NGINX is the way in)", 8888, port),
    "jupyterlab_version": Var("==4.4.*", "which JupyterLab (a pip version specifier)",
                              ">=4.4,<5", version_spec),
    "jupyter_server_version": Var(">=2.14,<3", "which Jupyter Server", ">=2.14,<3", version_spec),
    "nodelay": Var(True, "TCP_NODELAY on Jupyter's WebSockets (false: Nagle on, as stock "
                   "Jupyter, for comparison)", False),
    "python_packages": Var([], "seeds the notebook user's kernel environment (PEP 508; a deploy "
                           "adds the missing ones, never removes what the user installed)",
                           ["numpy>=1.26", "pandas"], lambda v: requirements_list(v, allow_urls=True)),
    "server_packages": Var([], "more packages for the server's environment (Jupyter Server and "
                           "JupyterLab extensions; PEP 508)", ["jupyterlab-git"],
                           lambda v: requirements_list(v, allow_urls=True)),
    "resource_usage": Var(True, "jupyter-resource-usage: memory and CPU in JupyterLab's status "
                          "bar", False),
    "jupyterlab_settings": Var({}, "JupyterLab setting defaults: {plugin id: {setting: value}}",
                               {"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"}},
                               lab_settings),
    "memory_max": Var("75%", "MemoryMax= of Jupyter and its kernels together (systemd hosts; 0 "
                      "turns it off)", "2G", memory_max, kinds=(str, int)),
    "tasks_max": Var(4096, "TasksMax=: processes and threads (0 turns it off)", 4096, not_negative),
    "oom_score_adj": Var(-100, "the server's OOMScoreAdjust=", -100, between(-1000, 1000)),
    "kernel_oom_score_adj": Var(500, "each kernel's oom_score_adj: kernels die first", 500,
                                between(-1000, 1000)),
    "cull_idle_timeout": Var(3600, "seconds: shut down kernels idle this long (busy ones never; 0 "
                             "turns it off)", 3600, not_negative),
    "cull_connected": Var(False, "also cull idle kernels a browser tab is still connected to", True),
    "allow_url_requirements": Var(False, "let python_packages install from URLs (name @ URL)",
                                  True),
    "client_max_body_size": Var("100M", "largest upload through NGINX", "500M", nginx_size),
    "proxy_read_timeout": Var(86400, "seconds an idle kernel's socket stays open through NGINX",
                              3600, between(1, 604800)),
    "login_rate_per_minute": Var(10, "password posts per client address and minute (NGINX "
                                 "limit_req)", 10, positive),
    "login_burst": Var(10, "posts beyond the rate before NGINX answers 429", 10, not_negative),
    "nginx_worker_shutdown_timeout": Var(30, "seconds an old NGINX worker keeps its sockets "
                                         "after a reload", 30, positive),
    "apt_proxy": Var("", "an apt proxy for servers without internet", "http://apt-cache.lan:3142",
                     http_url),
    "wheelhouse": Var("", "a folder of wheels on this machine uploaded to offline servers, or "
                      "build to download them once", "/srv/wheels", wheelhouse),
    "pip_index_url": Var("", "another package index for pip/uv", "https://pypi.example.org/simple",
                         http_url),
    "pip_installer": Var("uv", "what builds the Python environment", "pip", choices=("uv", "pip")),
    "build_env_here": Var(1, "1: with a wheelhouse and the host's Python here, build the "
                          "environment once here and unpack it on the hosts", 0, choices=(0, 1)),
    "env_provider": Var("venv", "a Python venv, or conda (Miniforge/Miniconda)", "conda",
                        choices=("venv", "conda")),
    "conda_installer": Var("", "conda's installer: an https URL (downloaded on the host) or a "
                           "file on this machine (uploaded)",
                           "https://github.com/conda-forge/miniforge/releases/download/24.11.3-0/"
                           "Miniforge3-24.11.3-0-Linux-x86_64.sh", installer),
    "conda_installer_sha256": Var("", "the installer's sha256, checked before it runs",
                                  "0" * 64, sha256),
    "conda_prefix": Var("/opt/jupyterfab/conda", "where conda is installed", "/opt/conda",
                        own_directory),
    "conda_environment": Var("jupyter/environment.yml.j2", "the server's conda environment, a "
                             "template in files/", "jupyter/environment.yml.j2", template),
    "conda_packages": Var(["nb_conda_kernels"], "conda packages for the server's environment",
                          ["nb_conda_kernels", "numpy>=1.26"], conda_packages),
    "conda_kernel_environments": Var([], "more conda environments, one kernel each (templates "
                                     "in files/)", ["conda/analysis.yml.j2"], kernel_environments),
    "conda_channels": Var(["conda-forge"], "the conda channels the deploy's environments and "
                          "the notebook user's condarc (%conda install) use, in order",
                          ["https://conda.example.org/conda-forge"], conda_channels),
    "cloudflare_zone": Var("", "the Cloudflare zone of server_name: DNS record, TLS, lockdown",
                           "example.com", zone),
    "cloudflare_proxied": Var(True, "proxy the record (orange cloud); false is DNS-only and "
                              "needs your own certificate", False),
    "cloudflare_api_url": Var("", f"Cloudflare's API ({CLOUDFLARE_API_URL}); another endpoint "
                              f"only with --set or ${CLOUDFLARE_API_URL_ENV}", CLOUDFLARE_API_URL,
                              cloudflare_api_url),
    "origin_lockdown": Var(True, "with a proxied record, NGINX admits Cloudflare's ranges only",
                           False),
    "authenticated_origin_pulls": Var(False, "NGINX also demands Cloudflare's client "
                                      "certificate", True),
    "origin_pull_ca": Var("", "local path of Cloudflare's origin-pull CA certificate",
                          "~/certs/origin-pull-ca.pem", local_path),
    "public_ipv4": Var("", "the A record's address; default: the inventory address, or detected",
                       "203.0.113.10", ip_version(4)),
    "public_ipv6": Var("", "the AAAA record's address; default: detected, if any",
                       "2001:db8::10", ip_version(6)),
    "tls_certificate": Var("", "local path of your own certificate (instead of an Origin CA one)",
                           "~/certs/jupyter.example.com.pem", local_path),
    "tls_key": Var("", "local path of its key (mode 0600)", "~/certs/jupyter.example.com.key",
                   local_path),
    "tls": Var("auto", "auto: own certificate, else Origin CA (proxied), else ACME for a public "
               "name, else refused; acme: always ACME; off: plain HTTP", "acme",
               choices=("auto", "acme", "off")),
    "acme_email": Var("", "the ACME CA's contact for expiry notices; required for ACME",
                      "admin@example.com", acme.check_email),
    "acme_server": Var("letsencrypt", "letsencrypt, staging, or an ACME directory's https URL",
                       "staging", acme.check_server),
    "acme_challenge": Var("auto", "auto: dns-01 with cloudflare_zone, else http-01", "http-01",
                          choices=("auto", "http-01", "dns-01")),
    "acme_dns_propagation_seconds": Var(10, "dns-01: seconds to wait after publishing the TXT "
                                        "record", 30, between(0, 3600)),
    "acme_ca_bundle": Var("", "local PEM file the host's certbot trusts for acme_server (a test "
                          "CA such as Pebble's)", "~/pebble.minica.pem", local_path),
    "allow_plain_http": Var(False, "serve Jupyter over plain HTTP (the password in clear text)",
                            True),
}

FORMS: dict[Any, str] = {
    hostname: "host name (RFC 1123)",
    zone: "domain name",
    own_directory: "absolute normalised path, not a system directory",
    local_path: "path on this machine",
    wheelhouse: "path on this machine, or build",
    http_url: "http(s) URL",
    cloudflare_api_url: f"{CLOUDFLARE_API_URL} only",
    user_name: "user name, not a system account",
    version_spec: "PEP 440 specifier",
    nginx_size: "NGINX size (number, k/m/g)",
    port: "1024-65535, not 80, 443 or the SSH port",
    sha256: "64 hex digits",
    installer: "https URL or path on this machine",
    template: "template path in files/",
    conda_packages: "list of conda package specs",
    kernel_environments: "list of template paths in files/",
    conda_channels: "list of channel names or URLs",
}
FORMS[VARIABLES["public_url"].check] = "http(s) origin"
FORMS[VARIABLES["python_packages"].check] = "list of PEP 508 requirements"
FORMS[VARIABLES["server_packages"].check] = "list of PEP 508 requirements"
FORMS[VARIABLES["oom_score_adj"].check] = "-1000 to 1000"
FORMS[VARIABLES["kernel_oom_score_adj"].check] = "-1000 to 1000"
FORMS[memory_max] = "share of RAM (75%), size (2G) or 0"
FORMS[lab_settings] = "mapping of plugin id to settings"
FORMS[VARIABLES["proxy_read_timeout"].check] = "1-604800 (seconds)"
FORMS[positive] = "a whole number above 0"
FORMS[not_negative] = "a whole number, 0 or more"
FORMS[VARIABLES["acme_dns_propagation_seconds"].check] = "0-3600 (seconds)"
FORMS[acme.check_email] = "email address"
FORMS[acme.check_server] = "letsencrypt, staging or https URL"
FORMS[VARIABLES["public_ipv4"].check] = "IPv4 address"
FORMS[VARIABLES["public_ipv6"].check] = "IPv6 address"

DEFAULTS: dict[str, Any] = {name: var.default for name, var in VARIABLES.items()}


def problem(name: str, value: Any, *, from_command_line: bool = False) -> str | None:
    """What is wrong with one variable's value on its own (type and form), or None."""
    var = VARIABLES[name]
    if not isinstance(value, var.types) or (isinstance(value, bool) and bool not in var.types):
        return f"must be {type_name(var.types)}, not {type_name((type(value),))}"
    if var.choices and value not in var.choices:
        return f"must be one of {', '.join(map(str, var.choices))}"
    if any(has_control(s) for s in strings_in(value)):
        return "must not contain control characters (newlines, tabs, escapes)"
    if name == "cloudflare_api_url" and from_command_line:
        return override_api_url(value)
    return var.check(value) if var.check else None


def strings_in(value: Any):
    """Every string in a value, keys of mappings included."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from strings_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings_in(v)
    elif isinstance(value, str):
        yield value


def host_problems(variables: dict[str, Any], ssh_user: str, ssh_port: int
                  ) -> list[tuple[str, str]]:
    """(key, problem) for rules over several of one host's merged variables."""
    found = []
    user = variables.get("jupyter_user", "")
    home = kernelenv.home_dir(user)
    if user and user == ssh_user:
        found.append(("jupyter_user", f"{user!r} is the SSH user: the notebook user must be an "
                                      "account of its own (anyone with the Jupyter password "
                                      "could use it)"))
    notebook_dir = variables.get("notebook_dir", "")
    if notebook_dir and not (notebook_dir == home or notebook_dir.startswith(home + "/")):
        found.append(("notebook_dir", f"must be inside the notebook user's home {home} "
                                      f"(e.g. {home}/notebooks): the deploy gives it to "
                                      f"{user}"))
    for key in ("prefix", "conda_prefix"):
        path = variables.get(key, "")
        if path and (path == home or path.startswith(home + "/")):
            found.append((key, f"must be outside the notebook user's home {home}: the "
                               "notebook user must not be able to change the server's "
                               "environment"))
    jupyter_port = variables.get("jupyter_port")
    if jupyter_port in (80, 443, ssh_port):
        found.append(("jupyter_port", f"{jupyter_port} is taken by "
                                      f"{'NGINX' if jupyter_port in (80, 443) else 'SSH'}: "
                                      "give another port between 1024 and 65535"))
    if not variables.get("allow_url_requirements"):
        for key in ("python_packages", "server_packages"):
            refused = requirements_list(variables.get(key) or [])
            if refused:
                found.append((key, refused))
    return found


def api_url_override() -> str | None:
    """The Cloudflare endpoint from the environment, when set (checked like --set)."""
    return os.environ.get(CLOUDFLARE_API_URL_ENV) or None


def type_name(types: tuple[type, ...]) -> str:
    names = {str: "a string", int: "a whole number", list: "a list", dict: "a mapping",
             bool: "true/false", type(None): "empty", float: "a decimal number"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def show_value(value: Any) -> str:
    """A default or example as the reference shows it (Markdown)."""
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if value == "" or value == [] or value == {}:
        return "(none)"
    if isinstance(value, list):
        return f"`[{', '.join(map(str, value))}]`"
    return f"`{value}`"


def reference_table() -> str:
    """The docs' table of every variable (Markdown, an anchor per name), made from
    ``VARIABLES``: docs/reference/variables.md is generated from it."""
    rows = ["| variable | what | allowed | default | example |",
            "| --- | --- | --- | --- | --- |"]
    for name, var in VARIABLES.items():
        rows.append(f"| <a id=\"{name}\"></a>`{name}` | {var.description} | {var.form} | "
                    f"{show_value(var.default)} | {show_value(var.example)} |")
    return "\n".join(rows) + "\n"
