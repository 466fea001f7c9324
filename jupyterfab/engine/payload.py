"""Local files sent to hosts as a command's standard input, read once for a fleet."""

from __future__ import annotations

import threading
from pathlib import Path

_lock = threading.Lock()
_held: dict[str, bytes] = {}
KEPT = 2       # e.g. the server's environment bundle and the notebook user's


def shared(path: Path) -> bytes:
    """The file's bytes, read once for every host of a fleet: sixteen hosts that
    unpack one bundle at once share one copy (~70 MB) instead of holding one each.
    The file's name must be its content's key (a bundle's is), so the copy never goes
    stale; the newest ``KEPT`` are kept."""
    key = str(path)
    with _lock:
        if key not in _held:
            while len(_held) >= KEPT:
                del _held[next(iter(_held))]
            _held[key] = Path(path).read_bytes()
        return _held[key]
