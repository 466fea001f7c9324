"""hosts.yaml: the inventory, validated once at load with errors a person can act on.

Settings merge in this order, later wins: code defaults < ``defaults`` <
each group the host is in (in the order listed) < the host < the command line.
Every error names the file, the line and the key, and is raised before any
host is contacted. Secrets never live here: they come from the environment,
a prompt or a 0600 file (see ``jupyterfab.stack.passwords``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from jupyterfab.engine import checks, yamlnodes
from jupyterfab.engine.errors import ConfigError
from jupyterfab.inventory import schema

# Variables the states and templates use: defaults, types and forms are in schema.py.
VAR_DEFAULTS: dict[str, Any] = schema.DEFAULTS
# The largest inventory read: a bigger file is a mistake (or an attack), not a fleet.
MAX_INVENTORY_BYTES = 1 << 20
# Values that look like secrets are refused here: they'd end up in version control.
SECRET_KEYS = re.compile(r"(password|passwd|secret|token|api_key|private_key)", re.I)

CONNECTION_KEYS: dict[str, tuple[type, ...]] = {
    "user": (str,), "port": (int,), "key": (str,), "known_hosts": (str,),
}
LAYER_KEYS = {"vars": (dict,), **CONNECTION_KEYS}        # defaults: and each group
HOST_KEYS = {"address": (str,), "groups": (list,), **LAYER_KEYS}
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
    # where each variable was set last, for errors: "hosts.yaml:12: hosts.web1.vars.prefix";
    # a variable not in it has its default
    origins: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

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
            validate_vars(overrides, ("--set",), from_command_line=True)
            for host in chosen:
                host.vars.update(overrides)
                host.origins.update({k: f"--set {k}" for k in overrides})
                check_provider(host.vars, ("--set",), host=host.name)
        for host in chosen:      # with --set applied: a later layer may mend an earlier one
            if "notebook_dir" not in host.origins:
                # the default follows the notebook user: /home/USER/notebooks
                host.vars["notebook_dir"] = f"{schema.home_dir(host.vars['jupyter_user'])}/notebooks"
            check_host(host)
        return chosen

    def _ad_hoc(self, target: str) -> Host:
        m = re.fullmatch(r"(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]]+\]|[^:@\s]+)(?::(?P<port>\d+))?", target)
        if not m or (not m.group("user") and not m.group("port") and "." not in target
                     and not _looks_like_ip(target)):
            raise InventoryError(
                f"unknown host {target!r}: not in {self.path or 'the inventory'}"
                f"{_suggest(target, self.hosts)} (a plain address works too: user@host[:port])")
        if m.group("port") and not 0 < int(m.group("port")) < 65536:
            raise InventoryError(f"-H {target}: {int(m.group('port'))} is not a port (1 to 65535)")
        base = _merge_host_settings(self.defaults, [], {})
        check_provider(base["vars"], ("defaults", "vars", "env_provider"), host=target)
        host = Host(name=m.group("host").strip("[]"), address=m.group("host").strip("[]"),
                    user=m.group("user") or base["user"], port=int(m.group("port") or base["port"]),
                    key=base.get("key", ""), known_hosts=base.get("known_hosts", ""),
                    vars=dict(base["vars"]))
        host.origins = {k: f"{self.path or 'the inventory'}: defaults.vars.{k}"
                        for k in (self.defaults.get("vars") or {})}
        return host


def _looks_like_ip(text: str) -> bool:
    return bool(re.fullmatch(r"[\d.]+|[0-9a-fA-F:]+", text))


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --------------------------------------------------------------------------- YAML with lines

_SCALARS = yaml.SafeLoader("")


def _build(node: yaml.Node, path: tuple, source: str) -> Any:
    """Python values from YAML nodes, refusing a key that is not plain text and a value
    no safe loader reads, with file:line."""
    if isinstance(node, yaml.MappingNode):
        out: dict = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise InventoryError(f"{source}:{key_node.start_mark.line + 1}: {_dotted(path)}: a key "
                                     "must be plain text, not a list or a mapping")
            out[key_node.value] = _build(value_node, path + (key_node.value,), source)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(v, path + (i,), source) for i, v in enumerate(node.value)]
    try:
        return _SCALARS.construct_object(node, deep=True)
    except yaml.MarkedYAMLError as exc:    # a tag no safe loader knows (!!python/..., !foo)
        reason = exc.problem
    except (ValueError, TypeError, OverflowError) as exc:   # a known tag, a bad value (!!int x)
        reason = f"{node.tag.rsplit(':', 1)[-1]} {node.value!r}: {exc}"
    raise InventoryError(f"{source}:{node.start_mark.line + 1}: {_dotted(path)}: YAML cannot "
                         f"read this value ({reason}): quote it, without a !! or ! tag")


def _dotted(path: tuple) -> str:
    return ".".join(map(str, path)) or "(top)"


class _NoAliasLoader(yaml.SafeLoader):
    """An inventory is plain data: an alias (``*name``) could multiply a small file into
    gigabytes (the "billion laughs"), so the first one is refused where it stands."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _AliasRefused(event.start_mark.line + 1, event.anchor)
        return super().compose_node(parent, index)


class _AliasRefused(InventoryError):
    """Raised inside the YAML composer; ``parse`` says it with the file's name."""

    def __init__(self, line: int, anchor: str):
        super().__init__(f"line {line}: YAML alias *{anchor}")
        self.line, self.anchor = line, anchor


def load(path: str | Path) -> Inventory:
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_INVENTORY_BYTES + 1)
    except OSError as exc:
        raise InventoryError(f"cannot read inventory {path}: {exc.strerror}") from None
    if len(raw) > MAX_INVENTORY_BYTES:
        raise InventoryError(f"{path}: larger than {MAX_INVENTORY_BYTES // 1024} KiB; an "
                             "inventory that big is not one jupyterfab reads")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InventoryError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse(text, str(path), base=path.parent)


def parse(text: str, source: str = "hosts.yaml", base: Path | None = None) -> Inventory:
    lines, data = _compose(text, source)
    return _Reader(source, lines, base).inventory(data)


def _compose(text: str, source: str) -> tuple[dict[tuple, int], Any]:
    """The file's data, and the line of every key path in it."""
    if len(text) > MAX_INVENTORY_BYTES:
        raise InventoryError(f"{source}: larger than {MAX_INVENTORY_BYTES // 1024} KiB; an "
                             "inventory that big is not one jupyterfab reads")
    try:
        node = yaml.compose(text, Loader=_NoAliasLoader)
    except _AliasRefused as exc:
        raise InventoryError(f"{source}:{exc.line}: YAML aliases (*{exc.anchor}) are not allowed "
                             "in an inventory: write the value out, or use defaults: and "
                             "groups: to share settings") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        raise InventoryError(f"{where}: not valid YAML: {exc.problem or exc}") from None
    if node is None:
        return {}, {}
    duplicate = yamlnodes.first_duplicate(node)
    if duplicate:
        raise InventoryError(f"{source}:{duplicate.mark.line + 1}: key "
                             f"{'.'.join(map(str, duplicate.path))!r} appears twice")
    lines = {(): node.start_mark.line + 1, **yamlnodes.key_lines(node)}
    data = _build(node, (), source)
    return lines, {} if data is None else data


class _Reader:
    """One inventory's sections checked in order: defaults, groups, then each host.
    ``fail(key_path, message)`` raises naming the file, the key's line and the key."""

    def __init__(self, source: str, lines: dict[tuple, int], base: Path | None):
        self.source, self.lines, self.base = source, lines, base
        self.defaults: dict = {}
        self.groups: dict = {}
        self.members: dict[str, list[str]] = {}

    def where(self, *key) -> str:
        while key and tuple(key) not in self.lines:
            key = key[:-1]
        line = self.lines.get(tuple(key))
        return f"{self.source}:{line}" if line else self.source

    def fail(self, key: tuple, message: str):
        raise InventoryError(f"{self.where(*key)}: {'.'.join(map(str, key))}: {message}")

    def inventory(self, data: Any) -> Inventory:
        if not isinstance(data, dict):
            raise InventoryError(f"{self.source}: the inventory must be a mapping with hosts:, "
                                 "groups:, defaults:")
        _check_keys(data, TOP_KEYS, (), self.fail)
        self.defaults = data.get("defaults") or {}
        _check_keys(self.defaults, LAYER_KEYS, ("defaults",), self.fail)
        validate_vars(self.defaults.get("vars") or {}, ("defaults", "vars"), self.fail)
        self.groups = data.get("groups") or {}
        for gname, group in self.groups.items():
            self._check_group(gname, group)
        self.members = {g: [] for g in self.groups}
        hosts_raw = data.get("hosts") or {}
        if not hosts_raw:
            raise InventoryError(f"{self.where('hosts')}: hosts: the inventory names no hosts")
        hosts = {hname: self._host(hname, spec) for hname, spec in hosts_raw.items()}
        return Inventory(path=Path(self.source) if self.source else None, hosts=hosts,
                         groups=self.members, defaults=self.defaults)

    def _check_group(self, gname, group) -> None:
        if not NAME_RE.match(str(gname)):
            self.fail(("groups", gname), "a group name uses letters, digits, '.', '_' and '-'")
        group = group or {}
        if not isinstance(group, dict):
            self.fail(("groups", gname), "must be a mapping (vars:, user:, ...)")
        _check_keys(group, LAYER_KEYS, ("groups", gname), self.fail)
        validate_vars(group.get("vars") or {}, ("groups", gname, "vars"), self.fail)

    def _host(self, hname, spec) -> Host:
        key = ("hosts", hname)
        spec = self._check_host_spec(key, spec)
        host_groups = spec.get("groups") or []
        for i, g in enumerate(host_groups):
            self._join(hname, key + ("groups", i), g)
        validate_vars(spec.get("vars") or {}, key + ("vars",), self.fail)
        # the host's settings, later wins: (key path, settings) for defaults, each group, the host
        layers = [(("defaults",), self.defaults),
                  *((("groups", g), self.groups.get(g) or {}) for g in host_groups),
                  (key, spec)]
        merged = _merge_host_settings(self.defaults, [layer for _, layer in layers[1:-1]], spec)
        var_layers = [(path + ("vars",), layer.get("vars") or {}) for path, layer in layers]
        setters = [path for path, layer in var_layers if "env_provider" in layer]
        check_provider(merged["vars"], setters[-1] + ("env_provider",) if setters else key, self.fail,
                       host=hname)
        if self.base is not None:
            _resolve_local_vars(merged["vars"], self.base)
            self._resolve_ssh_files(merged, layers)
        origins = {k: f"{self.where(*layer_path, k)}: {'.'.join(map(str, layer_path + (k,)))}"
                   for layer_path, layer in var_layers for k in layer}
        return Host(name=hname, address=spec["address"], user=merged["user"],
                    port=merged["port"], key=merged.get("key", ""),
                    known_hosts=merged.get("known_hosts", ""),
                    groups=list(host_groups), vars=merged["vars"], origins=origins)

    def _check_host_spec(self, key: tuple, spec) -> dict:
        if not NAME_RE.match(str(key[-1])):
            self.fail(key, "a host name uses letters, digits, '.', '_' and '-'")
        spec = spec or {}
        if not isinstance(spec, dict):
            self.fail(key, "must be a mapping with at least address:")
        _check_keys(spec, HOST_KEYS, key, self.fail)
        if not spec.get("address"):
            self.fail(key + ("address",), "is required (an IP address or DNS name to SSH to)")
        if not re.fullmatch(r"[A-Za-z0-9.:_-]+", spec["address"]):
            self.fail(key + ("address",), f"{spec['address']!r} is not a host name or IP address")
        return spec

    def _join(self, hname: str, key: tuple, g) -> None:
        """The host in group ``g``; a group with no settings needs no entry under groups:."""
        if not isinstance(g, str) or g not in self.groups:
            if not isinstance(g, str) or not NAME_RE.match(g):
                self.fail(key, f"{g!r} is not a group name")
            close = difflib.get_close_matches(g, list(self.groups), n=1, cutoff=0.8)
            if close:   # a typo would silently drop that group's settings for this host
                self.fail(key, f"{g!r} is not under groups: (did you mean {close[0]!r}?); "
                               f"if it is a group of its own, add '{g}: {{}}' under groups:")
            self.members.setdefault(g, [])
        self.members[g].append(hname)

    def _resolve_ssh_files(self, merged: dict, layers: list[tuple[tuple, dict]]) -> None:
        """Like a relative variable path, key: and known_hosts: are relative to the file, and
        must exist: found here, not as a connection error after the other hosts began."""
        for k in ("key", "known_hosts"):
            if not merged.get(k):
                continue
            path = Path(merged[k]).expanduser()
            merged[k] = str(path if path.is_absolute() else (self.base / path).resolve())
            if not Path(merged[k]).is_file():
                setter = [p for p, layer in layers if layer.get(k)][-1]
                self.fail(setter + (k,), f"no such file: {merged[k]}" + (
                    " (the private key SSH logs in with)" if k == "key" else
                    " (a known_hosts file: ssh-keyscan ADDRESS > it, after checking the key)"))


def _resolve_local_vars(variables: dict, base: Path) -> None:
    """Like key:, a relative local path is relative to the inventory file."""
    for k in ("conda_installer", "acme_ca_bundle"):
        value = variables.get(k, "")
        if value and (k != "conda_installer" or "://" not in value):   # or the installer's URL
            variables[k] = str((base / Path(value).expanduser()).resolve())


def _check_keys(mapping: dict, allowed: dict[str, tuple[type, ...]], path: tuple, fail) -> None:
    for k, v in mapping.items():
        if k not in allowed:
            fail(path + (k,), f"unknown key{_suggest(str(k), allowed)}; "
                              f"allowed here: {', '.join(allowed)}")
        if v is not None and not isinstance(v, allowed[k]) or isinstance(v, bool) and bool not in allowed[k]:
            fail(path + (k,), f"must be {schema.type_name(allowed[k])}, not {schema.type_name((type(v),))}")
        if isinstance(v, str) and checks.has_control(v):
            fail(path + (k,), "must not contain control characters (newlines, tabs, escapes)")
        if k == "user" and isinstance(v, str) and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}", v):
            fail(path + (k,), f"{v!r} is not a user name to SSH as (e.g. root or deploy)")
        if k == "port" and isinstance(v, int) and not 0 < v < 65536:
            fail(path + (k,), f"{v} is not a port (1 to 65535)")


def _fail_without_file(key: tuple, message: str):
    raise InventoryError(f"{'.'.join(map(str, key))}: {message}")


def validate_vars(variables: dict, path: tuple, fail=_fail_without_file, *,
                  from_command_line: bool = False) -> None:
    """Known names, the schema's types and forms, no secrets; ``fail(key_path, message)`` raises."""
    for k, v in variables.items():
        key = path + (k,)
        if SECRET_KEYS.search(str(k)):
            fail(key, "secrets never live in hosts.yaml: pass the Jupyter password with "
                      "JUPYTERFAB_PASSWORD, --password-file (mode 0600) or the prompt")
        if str(k).startswith("x_"):
            if any(checks.has_control(s) for s in schema.strings_in(v)):
                fail(key, "must not contain control characters (newlines, tabs, escapes)")
            continue   # free-form variables for the user's own states
        if k in schema.RETIRED:
            fail(key, schema.RETIRED[k])
        if k not in VAR_DEFAULTS:
            fail(key, f"unknown variable{_suggest(str(k), VAR_DEFAULTS)} "
                      "(your own variables for your own states start with x_)")
        variables[k] = v = schema.read(k, v)    # e.g. tls: off, which YAML reads as false
        problem = schema.problem(k, v, from_command_line=from_command_line)
        if problem:
            # most problems quote the value already: "'a@b' is not an email address"
            fail(key, problem if _shown(v) in problem else f"{problem} (got {_shown(v)})")


def _shown(value: Any) -> str:
    """The value in the error, on one line and not endless."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_host(host: Host) -> None:
    """One host's merged variables against each other and its SSH settings
    (schema.host_problems); the error names where the variable was set last."""
    for key, problem in schema.host_problems(host.vars, host.user):
        origin = host.origins.get(key) or f"{key} (the default)"
        raise InventoryError(f"{origin}: {problem}, for host {host.name}")


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


def _merge_host_settings(defaults: dict, groups: list[dict], host: dict) -> dict:
    merged: dict[str, Any] = {"user": "root", "port": 22, "vars": dict(VAR_DEFAULTS)}
    for layer in (defaults, *groups, host):
        for k, v in layer.items():
            if k == "vars":
                merged["vars"].update(v or {})
            elif k in CONNECTION_KEYS and v is not None:
                merged[k] = v
    return merged
