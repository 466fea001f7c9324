"""Every error jupyterfab raises, under one root (as pyinfra's ``api/exceptions.py``).

Callers that end a task catch ``JupyterfabError`` and print its one line; anything
else escaping is a bug and keeps its traceback. The branches say whose move it is:

    JupyterfabError
      ConfigError     the user's input: inventory, states, edge/Cloudflare settings, passwords
      HostError       a host: unreachable, unreadable facts, unsupported system
      ServiceError    a service or tool jupyterfab drives: Cloudflare's API, pip, Jupyter
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

from invoke import Exit


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


def one_line(task_body: Callable[..., Any]) -> Callable[..., Any]:
    """A fab/invoke task body whose JupyterfabError ends the task with its one line and
    exit code 2 when the user's input is at fault, else 1; a local file it cannot read or
    write (OSError) ends it with one line too, a closed pipe quietly: never a traceback."""
    @functools.wraps(task_body)
    def body(*args, **kwargs):
        try:
            return task_body(*args, **kwargs)
        except JupyterfabError as exc:
            raise Exit(f"error: {exc}", code=2 if isinstance(exc, ConfigError) else 1) from None
        except KeyboardInterrupt:
            raise Exit("interrupted (Ctrl-C): run the task again to finish what it began "
                       "(a deploy or upgrade picks up where it stopped)", code=130) from None
        except BrokenPipeError:
            # The reader went away (`fab deploy --json | head`): stop quietly, as a shell
            # tool does, instead of a traceback while Python flushes stdout at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise Exit(code=1) from None
        except OSError as exc:
            # A file of the user's on this machine (--dest, --archive, a key): one line.
            where = f": {exc.filename}" if exc.filename else ""
            raise Exit(f"error: {exc.strerror or exc}{where}", code=1) from None
    return body
