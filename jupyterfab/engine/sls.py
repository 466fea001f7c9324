"""Salt-style state files: top.sls -> sls names -> Jinja -> YAML -> declarations.

Everything here is local and happens before any host is touched: a template
error, a YAML error, an unknown ``module.function``, a bad argument, a
requisite that points nowhere or a requisite cycle all raise ``SlsError``
naming the sls file, the line when known, and the state.

    decls = load_states("states", context)      # context: states.base.Context
"""

from __future__ import annotations

import fnmatch
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

from jupyterfab.engine import quoting, yamlnodes
from jupyterfab.engine.errors import SlsError
from jupyterfab.engine.shell import Secret
from jupyterfab.engine.states import REGISTRY
from jupyterfab.engine.states.base import REQUISITE_KINDS, ArgError, Context
from jupyterfab.engine.templates import describe_template_error, render_template

REQUISITE_ARGS = REQUISITE_KINDS + tuple(f"{k}_in" for k in REQUISITE_KINDS)


# --- YAML --------------------------------------------------------------------------

# libyaml's parser when PyYAML has it: pure-Python parsing of a big sls costs
# more than the whole no-op deploy is allowed to take
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _SlsLoader(_BaseLoader):
    """Safe YAML where ``mode: 0644`` stays the string "0644" (YAML 1.1 would
    read it as the octal number 420, which then looks like mode 0420)."""


def _int_keeping_octal_strings(loader, node: yaml.ScalarNode):
    value = loader.construct_scalar(node)
    if re.fullmatch(r"0[0-7]+", value):
        return value
    return yaml.constructor.SafeConstructor.construct_yaml_int(loader, node)


_SlsLoader.add_constructor("tag:yaml.org,2002:int", _int_keeping_octal_strings)


def parse_yaml(text: str, values: quoting.SlsValues | None = None
               ) -> tuple[Any, dict[tuple, int]]:
    """Data and the 1-based line of each key: (id,), (id, fun), (id, fun, arg).
    ``values``: the render's values, put into the nodes before they become data."""
    loader = _SlsLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None and values is not None:
            node = values.put_back(node)
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    duplicate = yamlnodes.first_duplicate(node)
    if duplicate:
        raise yaml.constructor.ConstructorError(
            None, None, f"{duplicate.path[-1]!r} appears twice in one mapping (first on line "
            f"{duplicate.first_line}): YAML would keep only the last", duplicate.mark)
    # (id,), (id, fun) and (id, fun, arg): an argument is a mapping in the function's
    # list; an argument given twice in that list is placed by its first line
    lines: dict[tuple, int] = {}
    for path, line in sorted(yamlnodes.key_lines(node).items(), key=lambda item: item[1]):
        if len(path) <= 2 or (len(path) == 4 and isinstance(path[2], int)):
            lines.setdefault(tuple(k for k in path if not isinstance(k, int)), line)
    return data, lines


# --- declarations --------------------------------------------------------------------

@dataclass
class Requisite:
    kind: str                 # "require", "watch" or "onchanges"
    module: str | None        # "pkg" in `- pkg: nginx`; "sls" for a whole file; None if bare
    ref: str                  # an ID or a name
    line: int | None = None
    targets: tuple[tuple[str, str], ...] = ()   # resolved (module, id) keys

    def __str__(self) -> str:
        return f"{self.module}: {self.ref}" if self.module else self.ref


@dataclass
class Declaration:
    id: str
    module: str
    function: str
    name: Any                                      # str, or Secret for a secret command
    args: dict[str, Any] = field(default_factory=dict)
    requisites: list[Requisite] = field(default_factory=list)
    sls: str = ""                                  # file it came from, e.g. "states/nginx.sls"
    line: int | None = None
    arg_lines: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def fun(self) -> str:
        return f"{self.module}.{self.function}"

    @property
    def key(self) -> tuple[str, str]:
        return (self.module, self.id)

    @property
    def label(self) -> str:
        return f"{self.module}: {self.id}"

    def error(self, message: str, line: int | None = None) -> SlsError:
        return SlsError(message, sls=self.sls, line=line or self.line, state_id=self.id)


# --- rendering -----------------------------------------------------------------------

def sls_path(states_dir: Path, name: str) -> Path:
    base = states_dir / name.replace(".", "/")
    for candidate in (base.with_name(base.name + ".sls"), base / "init.sls"):
        if candidate.is_file():
            return candidate
    raise SlsError(f"no sls named {name!r} (looked for {base}.sls and {base}/init.sls)")


def _display(path: Path, states_dir: Path) -> str:
    try:
        return str(path.relative_to(states_dir.parent))
    except ValueError:
        return str(path)


def render_template_file(path: Path, states_dir: Path, variables: dict[str, Any]
                         ) -> tuple[str, dict[str, Secret], quoting.SlsValues]:
    """Jinja-render one sls file. A Secret in the output becomes a unique token
    that ``_restore_secrets`` turns back into a Secret after YAML parsing, so a
    secret survives as a Secret (shown as ***) instead of as plain text. Every
    other value becomes a token too, put back into the parsed YAML as data
    (``quoting.SlsValues``)."""
    nonce = secrets.token_hex(4)
    seen: dict[str, Secret] = {}
    values = quoting.SlsValues()

    def finalize(value: Any) -> Any:
        if isinstance(value, Secret):
            token = f"__jupyterfab_secret_{nonce}_{len(seen)}__"
            seen[token] = value
            return token
        # every other value goes in as data, never as YAML text
        return values.finalize(value)

    relative = path.relative_to(states_dir).as_posix()
    try:
        return render_template(states_dir, relative, variables, finalize=finalize), seen, values
    except jinja2.TemplateError as exc:
        raise SlsError(describe_template_error(exc, _display(path, states_dir),
                                               states_dir.parent)) from None


def _restore_secrets(value: Any, seen: dict[str, Secret]) -> Any:
    if not seen:
        return value
    if isinstance(value, str):
        if value in seen:
            return seen[value]
        if any(token in value for token in seen):
            for token, secret in seen.items():
                value = value.replace(token, secret.reveal())
            return Secret(value)
        return value
    if isinstance(value, list):
        return [_restore_secrets(v, seen) for v in value]
    if isinstance(value, dict):
        return {k: _restore_secrets(v, seen) for k, v in value.items()}
    return value


def _load_yaml(text: str, where: str, values: quoting.SlsValues | None = None
               ) -> tuple[Any, dict]:
    try:
        return parse_yaml(text, values)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise SlsError(f"YAML error: {exc.problem or exc}"
                       + (f" ({exc.context})" if exc.context else ""), sls=where, line=line) from None
    except yaml.YAMLError as exc:
        raise SlsError(f"YAML error: {exc}", sls=where) from None
    except (ValueError, TypeError, OverflowError) as exc:   # !!int abc, a date 2026-13-01
        raise SlsError(f"YAML error: a value YAML cannot read ({exc}): quote it", sls=where) from None


def _parse_requisites(kind: str, value: Any, where: str, state_id: str, line: int | None
                      ) -> list[Requisite]:
    if not isinstance(value, list):
        value = [value]
    found = []
    for item in value:
        if isinstance(item, str):
            found.append(Requisite(kind, None, item, line))
        elif isinstance(item, dict) and len(item) == 1:
            (module, ref), = item.items()
            if not isinstance(ref, str):
                raise SlsError(f"{kind}: `{module}: {ref!r}` must name one state",
                               sls=where, line=line, state_id=state_id)
            found.append(Requisite(kind, str(module), ref, line))
        else:
            raise SlsError(f"{kind}: expected `- module: id` or `- id`, got {item!r}",
                           sls=where, line=line, state_id=state_id)
    return found


def _declarations(data: dict, lines: dict, where: str, seen_secrets: dict) -> list[Declaration]:
    decls = []
    for state_id, body in data.items():
        if state_id in ("include", "extend"):
            continue
        state_id = str(state_id)
        line = lines.get((state_id,))
        if isinstance(body, str):                      # nginx: pkg.installed
            body = {body: []}
        if not isinstance(body, dict) or not body:
            raise SlsError("expected `module.function:` with a list of arguments",
                           sls=where, line=line, state_id=state_id)
        for fun_key, raw_args in body.items():
            fun_key = str(fun_key)
            fun_line = lines.get((state_id, fun_key), line)
            raw_args = [] if raw_args is None else raw_args
            if not isinstance(raw_args, list):
                raise SlsError(f"{fun_key}: arguments must be a list of `- key: value`",
                               sls=where, line=fun_line, state_id=state_id)
            module, _, function = fun_key.partition(".")
            decl = Declaration(state_id, module, function, state_id, sls=where, line=fun_line)
            for item in raw_args:
                if isinstance(item, str) and not function:   # pkg: [installed, ...]
                    decl.function = item
                    continue
                if not (isinstance(item, dict) and len(item) == 1):
                    raise SlsError(f"{fun_key}: expected `- key: value`, got {item!r}",
                                   sls=where, line=fun_line, state_id=state_id)
                (key, value), = item.items()
                key = str(key)
                arg_line = lines.get((state_id, fun_key, key), fun_line)
                if key in decl.args or (key == "name" and decl.name != state_id):
                    raise SlsError(f"argument {key!r} given twice", sls=where, line=arg_line,
                                   state_id=state_id)
                value = _restore_secrets(value, seen_secrets)
                decl.arg_lines[key] = arg_line
                if key == "name":
                    decl.name = value
                elif key in REQUISITE_ARGS:
                    decl.requisites += _parse_requisites(key, value, where, state_id, arg_line)
                else:
                    decl.args[key] = value
            if not decl.function:
                raise SlsError(f"{fun_key}: no function given (e.g. `{module}.installed`)",
                               sls=where, line=fun_line, state_id=state_id)
            decls.append(decl)
    return decls


def _resolve_include(name: str, current: str) -> str:
    if not name.startswith("."):
        return name
    package = current.rsplit(".", 1)[0] if "." in current else ""
    relative = name.lstrip(".")
    return f"{package}.{relative}" if package else relative


def render_sls(states_dir: str | Path, names: list[str], context: Context) -> list[Declaration]:
    """Render the named sls files (and their includes, first) into raw declarations."""
    states_dir = Path(states_dir)
    done: set[str] = set()
    decls: list[Declaration] = []

    def render(name: str) -> None:
        if name in done:
            return
        done.add(name)
        path = sls_path(states_dir, name)
        where = _display(path, states_dir)
        text, seen, values = render_template_file(path, states_dir,
                                                  context.template_vars({"sls": name}))
        data, lines = _load_yaml(text, where, values)
        if data is None:
            return
        if not isinstance(data, dict):
            raise SlsError("expected a mapping of state IDs", sls=where)
        if "extend" in data:
            raise SlsError("`extend:` is not supported", sls=where, line=lines.get(("extend",)))
        includes = data.get("include") or []
        if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
            raise SlsError("include: expected a list of sls names", sls=where,
                           line=lines.get(("include",)))
        for included in includes:
            try:
                render(_resolve_include(included, name))
            except SlsError as exc:
                if exc.sls:
                    raise
                raise SlsError(exc.reason, sls=where, line=lines.get(("include",))) from None
        decls.extend(_declarations(data, lines, where, seen))

    for name in names:
        render(name)
    return decls


def top_sls_names(states_dir: str | Path, context: Context) -> list[str]:
    """The sls names top.sls assigns to this host, in order, without repeats."""
    states_dir = Path(states_dir)
    path = states_dir / "top.sls"
    if not path.is_file():
        raise SlsError(f"{path} does not exist")
    where = _display(path, states_dir)
    text, _, values = render_template_file(path, states_dir, context.template_vars())
    data, lines = _load_yaml(text, where, values)
    if not isinstance(data, dict) or not isinstance(data.get("base"), dict):
        raise SlsError("expected `base:` mapping targets to sls lists", sls=where)
    names: list[str] = []
    for target, sls_list in data["base"].items():
        target = str(target)
        if not isinstance(sls_list, list) or not all(isinstance(s, str) for s in sls_list):
            raise SlsError(f"target {target!r}: expected a list of sls names", sls=where)
        if target.startswith("group:"):
            matched = target[len("group:"):] in context.groups
        else:
            matched = fnmatch.fnmatchcase(context.host, target)
        if matched:
            names += [s for s in sls_list if s not in names]
    return names


# --- checking and ordering ---------------------------------------------------------

def validate(decls: list[Declaration]) -> list[Declaration]:
    """Check each declaration's function and arguments (normalizing them),
    resolve requisites, and order requisites first. Returns the new order."""
    by_key: dict[tuple[str, str], Declaration] = {}
    file_of_id: dict[str, Declaration] = {}
    for decl in decls:
        other = file_of_id.setdefault(decl.id, decl)
        if other.sls != decl.sls:    # as Salt: an ID is global, a requisite names it alone
            raise decl.error(f"ID already used in {other.sls}"
                             + (f", line {other.line}" if other.line else "")
                             + ": state IDs must be unique across state files")
        if decl.key in by_key:
            other = by_key[decl.key]
            raise decl.error(f"{decl.fun}: ID already used by {other.fun} in {other.sls}"
                             + (f", line {other.line}" if other.line else ""))
        by_key[decl.key] = decl
        spec = REGISTRY.get(decl.fun)
        if spec is None:
            known = ", ".join(sorted(REGISTRY))
            raise decl.error(f"unknown state function {decl.fun!r} (known: {known})")
        try:
            decl.name, decl.args = spec.normalize(decl.name, decl.args)
        except ArgError as exc:
            raise decl.error(f"{decl.fun}: {exc}", decl.arg_lines.get(exc.arg or "")) from None

    for decl in decls:
        for req in decl.requisites:
            if req.targets:       # added by another state's *_in, already resolved
                continue
            kind = req.kind.removesuffix("_in")
            targets = _find_targets(decls, req)
            if not targets:
                raise decl.error(f"{req.kind}: `{req}` matches no state", req.line)
            if req.kind.endswith("_in"):
                for target in targets:
                    target.requisites.append(
                        Requisite(kind, decl.module, decl.id, req.line, (decl.key,)))
            else:
                req.targets = tuple(t.key for t in targets)
        decl.requisites = [r for r in decl.requisites if not r.kind.endswith("_in")]
    return order(decls, by_key)


def _find_targets(decls: list[Declaration], req: Requisite) -> list[Declaration]:
    if req.module == "sls":
        return [d for d in decls if _sls_name_matches(d.sls, req.ref)]
    candidates = [d for d in decls if req.module is None or d.module == req.module]
    by_id = [d for d in candidates if d.id == req.ref]
    return by_id or [d for d in candidates if d.name == req.ref]


def _sls_name_matches(where: str, ref: str) -> bool:
    stem = where.removesuffix(".sls").removesuffix("/init")
    return stem.endswith("/" + ref.replace(".", "/")) or stem == ref.replace(".", "/")


def order(decls: list[Declaration], by_key: dict) -> list[Declaration]:
    """Declaration order, except that a state's requisites come before it (a
    stable depth-first sort); a cycle is an SlsError naming its states."""
    placed: list[Declaration] = []
    state: dict[tuple[str, str], str] = {}

    def visit(decl: Declaration, path: list[Declaration]) -> None:
        mark = state.get(decl.key)
        if mark == "done":
            return
        if mark == "visiting":
            loop = path[path.index(decl):] + [decl]
            raise decl.error("requisite cycle: " + " -> ".join(d.label for d in loop))
        state[decl.key] = "visiting"
        for req in decl.requisites:
            for key in req.targets:
                visit(by_key[key], path + [decl])
        state[decl.key] = "done"
        placed.append(decl)

    for decl in decls:
        visit(decl, [])
    return placed


def load_states(states_dir: str | Path, context: Context) -> list[Declaration]:
    """Everything top.sls assigns to ``context.host``, checked and ordered."""
    return validate(render_sls(states_dir, top_sls_names(states_dir, context), context))


__all__ = ["SlsError", "Declaration", "Requisite", "load_states", "render_sls", "top_sls_names",
           "validate", "order"]
