"""Where things are in a YAML document: the line of every mapping key, and the first
key written twice. One mapper for the state files and the inventory, so both say
file:line the same way."""

from __future__ import annotations

from dataclasses import dataclass

import yaml


@dataclass(frozen=True)
class Duplicate:
    path: tuple           # the key's path, the key last
    first_line: int       # 1-based
    mark: yaml.Mark       # where it is written again


def key_lines(node: yaml.Node | None) -> dict[tuple, int]:
    """The 1-based line of every mapping key and every sequence item, by its path from
    the root (an item's last step is its index). The first place wins for a repeated key."""
    lines: dict[tuple, int] = {}
    stack: list[tuple[tuple, yaml.Node | None]] = [((), node)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    lines.setdefault(path + (key.value,), key.start_mark.line + 1)
                    stack.append((path + (key.value,), value))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines.setdefault(path + (i,), item.start_mark.line + 1)
                stack.append((path + (i,), item))
    return lines


def first_duplicate(node: yaml.Node | None) -> Duplicate | None:
    """The first key written twice in one mapping (YAML would keep only the last and
    silently drop the first), or None."""
    stack: list[tuple[tuple, yaml.Node | None]] = [((), node)]
    while stack:
        path, node = stack.pop(0)
        if isinstance(node, yaml.SequenceNode):
            stack += [(path + (i,), item) for i, item in enumerate(node.value)]
        elif isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                    if key.value in first:
                        return Duplicate(path + (key.value,), first[key.value], key.start_mark)
                    first[key.value] = key.start_mark.line + 1
                    stack.append((path + (key.value,), value))
    return None
