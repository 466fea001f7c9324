"""The command line's side of the one exception root: a task body that raises a
``JupyterfabError`` ends with its one line and an exit code (fabfile.py and tasks.py);
and the value a repeatable option takes, shown in ``--help``."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

from invoke import Exit
from invoke.parser import ParserContext

from jupyterfab.engine.errors import ConfigError, JupyterfabError


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


# Invoke's --help shows a value only for text and number options: a repeatable one
# (--set, a list) read like a switch that takes none.
PLACEHOLDERS = {"set": "KEY=VALUE"}


def _with_list_values(help_for: Callable[..., tuple[str, str]]) -> Callable[..., tuple[str, str]]:
    @functools.wraps(help_for)
    def wrapped(context: ParserContext, flag: str) -> tuple[str, str]:
        names, text = help_for(context, flag)
        arg = context.flags[flag]
        if arg.kind is list:
            value = PLACEHOLDERS.get(arg.name, "VALUE")
            names = ", ".join(f"{n} {value}" if len(n.strip("-")) == 1 else f"{n}={value}"
                              for n in names.split(", "))
        return names, text
    return wrapped


if not hasattr(ParserContext.help_for, "__wrapped__"):
    ParserContext.help_for = _with_list_values(ParserContext.help_for)
