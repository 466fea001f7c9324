"""Every error jupyterfab raises, under one root (as pyinfra's ``api/exceptions.py``).

Callers that end a task catch ``JupyterfabError`` and print its one line; anything
else escaping is a bug and keeps its traceback. The branches say whose move it is:

    JupyterfabError
      ConfigError     the user's input: inventory, states, edge/Cloudflare settings, passwords
      HostError       a host: unreachable, unreadable facts, unsupported system
      ServiceError    a service or tool jupyterfab drives: Cloudflare's API, pip, Jupyter

The command line's side (the one line and the exit code) is ``jupyterfab.cli``.
"""

from __future__ import annotations


class JupyterfabError(Exception):
    """The root: a failure jupyterfab can explain in one line."""


class ConfigError(JupyterfabError):
    """The user's input is wrong (fix the inventory, a state file, an option)."""


class SlsError(ConfigError):
    """A state file cannot be used; the message says where and why."""

    def __init__(self, message: str, *, sls: str | None = None, line: int | None = None,
                 state_id: str | None = None):
        where = ""
        if sls:
            where = sls + (f", line {line}" if line else "")
        if state_id:
            where += (": " if where else "") + f"state {state_id!r}"
        super().__init__(f"{where}: {message}" if where else message)
        self.sls, self.line, self.state_id, self.reason = sls, line, state_id, message


class HostError(JupyterfabError):
    """A host cannot be worked on: unreachable, unreadable, or unsupported."""


class ServiceError(JupyterfabError):
    """A service or tool jupyterfab drives failed or refused."""


def tool_output_tail(text: str, lines: int = 8, width: int = 300) -> str:
    """The last ``lines`` lines of a tool's error output, each cut to ``width`` characters
    (keeping its end): what failed without pip's kilobytes-long "from versions: ..." list."""
    tail = text.strip().splitlines()[-lines:]
    return "\n".join(line if len(line) <= width else "..." + line[-(width - 3):] for line in tail)
