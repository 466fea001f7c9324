"""The package's shape: no import cycle between jupyterfab modules (imports inside
functions count too), and no module reaching into another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "jupyterfab"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, str]]:
    """(module imported, name imported) for every import in the file, at any depth."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found += [(base, alias.name) for alias in node.names]
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for target, attr in imports(path):
            full = f"{target}.{attr}" if attr else target
            for candidate in (full, target):
                if candidate in modules and candidate != name:
                    edges[name].add(candidate)
                    break
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


def test_no_import_cycle_between_jupyterfab_modules():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_module_imports_another_modules_private_names():
    reaching = []
    for path in PACKAGE.rglob("*.py"):
        for target, attr in imports(path):
            if attr.startswith("_") and attr != "__future__" and target.startswith("jupyterfab"):
                reaching.append(f"{module_name(path)}: from {target} import {attr}")
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name) and node.value.id in {
                        "engine", "cf", "cloudflare", "deploy", "day2", "edge", "facts", "sls", "upgrade"}):
                reaching.append(f"{module_name(path)}: {node.value.id}.{node.attr}")
    assert reaching == []


def test_the_service_states_and_the_jupyter_sls_leave_every_init_to_its_adapter():
    """Adding an init (OpenRC) is one module in initsys/ and its template: the service
    state and the sls name no init and none of an init's tools."""
    text = (PACKAGE / "engine" / "states" / "service.py").read_text()
    service = text.replace(ast.get_docstring(ast.parse(text), clean=False), "")   # its code
    sls = (PACKAGE.parent / "states" / "jupyter" / "init.sls").read_text()
    for word in ("systemctl", "initctl", "journalctl", "update-rc.d", '"upstart"', '"systemd"'):
        assert word not in service, word
    for word in ("init ==", "init !=", "/etc/init/", "/etc/systemd/", ".upstart.j2", ".service.j2"):
        assert word not in sls, word


# What each layer may import (besides itself and the top-level package): each only
# from those below it; dev (sandbox, test doubles, docs generation) from anything.
LAYERS = {
    "engine": set(),
    "inventory": {"engine"},
    "stack": {"engine", "inventory"},
    "verify": {"engine", "inventory", "stack"},
    "dev": {"engine", "inventory", "stack", "verify"},
}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def layer_violations(edges: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in sorted(edges.items()):
        layer = layer_of(module)
        for target in sorted(targets):
            other = layer_of(target)
            if layer and other and other != layer and other not in LAYERS[layer]:
                found.append(f"{module} ({layer}) imports {target} ({other})")
            if layer and target == "jupyterfab.cli":
                found.append(f"{module} ({layer}) imports the command-line wrapper {target}")
    return found


def test_each_layer_imports_only_the_layers_below_it():
    assert layer_violations(graph()) == []


def test_the_layer_rule_finds_an_engine_module_importing_the_stack():
    edges = {"jupyterfab.engine.sls": {"jupyterfab.stack.deploy", "jupyterfab.engine.shell"},
             "jupyterfab.stack.deploy": {"jupyterfab.engine.sls"},
             "jupyterfab.verify.conftest": {"jupyterfab.dev.sandbox"}}
    assert layer_violations(edges) == [
        "jupyterfab.engine.sls (engine) imports jupyterfab.stack.deploy (stack)",
        "jupyterfab.verify.conftest (verify) imports jupyterfab.dev.sandbox (dev)"]


def test_no_layer_imports_the_command_line_libraries():
    """invoke's task machinery belongs to fabfile.py, tasks.py, jupyterfab.cli (and dev's docs)."""
    found = [f"{module_name(p)}: {target}" for p in PACKAGE.rglob("*.py") if layer_of(module_name(p)) not in (None, "dev")
             for target, _ in imports(p) if target.split(".")[0] == "invoke"]
    assert found == []


def test_every_module_lives_in_a_layer():
    loose = sorted(m for m in graph() if layer_of(m) is None and m not in ("jupyterfab", "jupyterfab.cli"))
    assert loose == []


def test_every_test_file_has_a_name_of_its_own():
    """pytest's default import mode imports test files by their base name: two of one name
    (a unit and an e2e module) stop the whole collection of `./run test`."""
    tests = PACKAGE.parent / "tests"
    names = [p.name for p in tests.rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
