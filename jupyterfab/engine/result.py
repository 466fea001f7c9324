"""The one result shape every state (and every Cloudflare step) returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# How a state that failed only because another did begins its comment (highstate.apply).
REQUISITE_FAILED = "One or more requisite failed: "
NOT_APPLIED = "not applied: "


@dataclass
class Result:
    """What applying (or, in dry-run, predicting) one state did.

    ``ok`` is True (done, or nothing to do), False (failed) or None (dry-run:
    would change). ``changes`` is empty when nothing changed; ``comment`` always
    says why ("nginx is running", "would install nginx").
    """

    name: str
    changes: dict[str, Any] = field(default_factory=dict)
    comment: str = ""
    ok: bool | None = True
    state_id: str = ""
    function: str = ""          # e.g. "pkg.installed"
    stderr: str = ""            # of the failing command, for the summary
    duration: float = 0.0       # seconds
    # failed only because another state did (a requisite, or a template that stopped the
    # run): the table names the states that failed on their own first
    blocked: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def failed_on_its_own(self) -> bool:
        """Failed, and not merely because another state did."""
        return self.ok is False and not self.blocked
