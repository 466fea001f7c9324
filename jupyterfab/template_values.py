"""Values reach state files and templates as data: each ``{{ value }}`` is written
in the form its file's format reads back as that one value, or refused.

The inventory schema already refuses what could break a format (schema.py);
this is the second line: a value that slips through (a variable of the user's
own, a derived value, a schema gap) cannot add a YAML key, an NGINX directive
or a unit setting.

    sls (YAML)        never as text: a token, replaced by the value in the parsed
                      YAML nodes (SlsValues)
    NGINX             a bare word, else a double-quoted string; ``$`` (variables
                      expand even in quotes) and control characters are refused
    systemd, Upstart, one word of safe characters, else refused: a newline there is a
    sshd              new directive
    Python            numbers and ``| tojson`` output only; other text is refused

Output of ``| tojson`` and ``| safe`` (Markup) is the template's own and passes as it is.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Callable
from typing import Any

import jinja2
import yaml
from markupsafe import Markup

from .errors import ConfigError
from .initsys import ADAPTERS

# No character YAML gives a meaning to in any position (',' ends a flow item, ':' and
# '#' a key or a comment, quotes and brackets open something).
_YAML_WORD = re.compile(r"[A-Za-z0-9_./@%+=~-]+")
_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# What the init files and NGINX take as one bare word.
_WORD = re.compile(r"[A-Za-z0-9_./@%+=,:~-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class UnsafeValue(jinja2.TemplateRuntimeError, ConfigError):
    """A value that would change the structure of the file it is written into (a Jinja
    error, so the render's caller reports it with the template's name and line)."""


@functools.lru_cache(maxsize=4096)
def _reads_back(text: str) -> bool:
    """YAML reads ``text`` as this same string (not ``true``, ``~``, ``0644`` or ``1.5``)."""
    try:
        return yaml.load(text, Loader=_YamlLoader) == text
    except yaml.YAMLError:
        return False


class SlsValues:
    """The values of one sls render, kept out of its YAML text.

    Each ``{{ value }}`` is written as a token of plain letters (the finalize);
    after YAML has made the nodes of the template's own text, every token is
    put back into its node as data (``put_back``). Whatever a value holds,
    quotes, newlines, ``: ``, ``#``, it cannot add a key, an item or an argument;
    it works the same inside quotes, in a plain scalar, in a key, or joined to
    other text. A node that is one token alone takes the value's own type. A
    number, and a word with no character YAML reads as syntax that YAML reads
    back as the same string (``/opt/jupyterfab``), are written as they are."""

    def __init__(self) -> None:
        self.nonce = secrets.token_hex(4)
        self.values: dict[str, Any] = {}
        self._token = re.compile(rf"__jupyterfab_value_{self.nonce}_[0-9]+__")

    def finalize(self, value: Any) -> Any:
        if isinstance(value, Markup) or value is None or isinstance(value, jinja2.Undefined):
            return value      # | tojson, | safe: the template's own text; Undefined raises
        if isinstance(value, int) and not isinstance(value, bool):
            return value      # 8888: written as text, read back as the number
        if isinstance(value, str) and _YAML_WORD.fullmatch(value) and _reads_back(value):
            return value      # /opt/jupyterfab: no YAML syntax anywhere, and YAML reads the same text
        token = f"__jupyterfab_value_{self.nonce}_{len(self.values)}__"
        self.values[token] = value
        return token

    def put_back(self, node: yaml.Node) -> yaml.Node:
        """The node tree with every token replaced by its value (a new node where a
        value is a list or mapping)."""
        if not self.values:
            return node
        if isinstance(node, yaml.MappingNode):
            node.value = [(self.put_back(k), self.put_back(v))
                          for k, v in node.value]
            return node
        if isinstance(node, yaml.SequenceNode):
            node.value = [self.put_back(v) for v in node.value]
            return node
        if not isinstance(node, yaml.ScalarNode) or "__jupyterfab_value_" not in node.value:
            return node
        whole = self.values.get(node.value)
        if node.value in self.values and not isinstance(whole, str):
            if isinstance(whole, (list, tuple, dict, bool, int, float)):
                replacement = yaml.representer.SafeRepresenter().represent_data(
                    list(whole) if isinstance(whole, tuple) else whole)
                replacement.start_mark, replacement.end_mark = node.start_mark, node.end_mark
                if not node.style or isinstance(whole, (list, tuple, dict)):
                    return replacement
            whole = str(whole)
        text = whole if isinstance(whole, str) else self._token.sub(
            lambda m: str(self.values[m.group(0)]), node.value)
        return yaml.ScalarNode("tag:yaml.org,2002:str", text, node.start_mark, node.end_mark,
                               style='"')


def _refuse(value: str, fmt: str, why: str):
    shown = repr(value) if len(value) <= 60 else repr(value[:57]) + "..."
    raise UnsafeValue(f"the value {shown} cannot be written into {fmt} safely: {why}")


def nginx_value(value: Any) -> Any:
    if not isinstance(value, str) or isinstance(value, Markup) or _WORD.fullmatch(value):
        return value
    if _CONTROL.search(value):
        _refuse(value, "an NGINX config", "it holds a control character")
    if "$" in value:
        _refuse(value, "an NGINX config", "NGINX expands '$' even inside quotes")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def word_only(fmt: str, why: str) -> Callable[[Any], Any]:
    """The escaping of a format where a text value is written bare: one word of
    letters, digits and ._/@%+=,:~- (anything else is refused, ``why``)."""
    def escape(value: Any) -> Any:
        if isinstance(value, str) and not isinstance(value, Markup) and not _WORD.fullmatch(value):
            _refuse(value, fmt, why)
        return value
    return escape


# '%' stays in an init file's words: MemoryMax=75% needs it, and the schema keeps it
# out of every path and name, where systemd would read it as a specifier.
INIT_FILE_VALUES = {system.template_suffix: word_only(
    system.file_format, "only letters, digits and ._/@%+=,:~- are written there "
                        f"(a newline would start a new {system.file_line})") for system in ADAPTERS.values()}
python_value = word_only("a Python file", "write text values with | tojson")
sshd_value = word_only("an sshd config", "only letters, digits and ._/@%+=,:~- are written there "
                                         "(a newline would start a new keyword)")


def _identity(value: Any) -> Any:
    return value


def for_template(source: str) -> Callable[[Any], Any]:
    """The escaping a ``files/`` template's format needs, chosen by its name."""
    for suffix, escape in INIT_FILE_VALUES.items():    # each init's (initsys)
        if source.endswith(suffix):
            return escape
    if source.startswith("nginx/") and source.endswith(".conf.j2"):
        return nginx_value
    if source.endswith(".py.j2"):
        return python_value
    if source.startswith("ssh/"):
        return sshd_value
    return _identity
