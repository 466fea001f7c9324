"""What the last demo deployed, so that a plain ``./run verify`` checks it and the next
demo reuses it; and the running sandbox's inventories, which the inventory rule
(``jupyterfab.inventory.selection``) prefers while sandbox hosts run."""

from __future__ import annotations

import json
from pathlib import Path

from jupyterfab.dev import sandbox

DEMO_FILE = "demo.json"     # in .sandbox/: what the last demo deployed with


def last_demo(project: Path) -> dict:
    """What the last demo deployed with (inventory, verify's options); {} when there was
    none since the sandbox was last booted (``sandbox.up`` rewrites hosts.yaml)."""
    work = sandbox.workdir_for(project)
    record, plain = work / DEMO_FILE, work / "hosts.yaml"
    if not record.is_file() or not plain.is_file() or record.stat().st_mtime < plain.stat().st_mtime:
        return {}
    return json.loads(record.read_text())


def remember_demo(project: Path, inventory_file: Path, *, kind: str, host: str,
                  **verify_options: str) -> None:
    """Record what a demo deployed (``kind``: acme or cloudflare, to ``host``) and with
    what, so that a plain ``invoke verify`` checks it and the next demo reuses it."""
    (sandbox.workdir_for(project) / DEMO_FILE).write_text(json.dumps(
        {"inventory": str(Path(inventory_file).resolve()), "kind": kind, "host": host,
         **verify_options}, indent=2) + "\n")


def verify_options(project: Path, inventory_file: Path) -> dict:
    """The options the last demo's verify took, when ``inventory_file`` is its inventory."""
    demo = last_demo(project)
    same = demo and Path(demo["inventory"]) == Path(inventory_file).resolve()
    return {k: v for k, v in demo.items() if k not in ("inventory", "kind", "host")} if same else {}


def sandbox_inventories(project: Path) -> list[Path]:
    """The running sandbox's inventories, the last demo's first (none when no sandbox runs)."""
    plain = sandbox.workdir_for(project) / "hosts.yaml"
    if not plain.is_file() or not sandbox.list_hosts():
        return []
    demo = Path(last_demo(project).get("inventory") or plain)
    return [demo, plain] if demo != plain.resolve() and demo.is_file() else [plain]
