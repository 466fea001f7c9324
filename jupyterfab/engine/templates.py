"""The one Jinja setup for state files and files/ templates, and the one way a
template's failure is told (``file, line N: why``)."""

from __future__ import annotations

import contextvars
import functools
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2


def make_jinja_env(search_path: str | Path, *, finalize: Callable[[Any], Any] | None = None
                   ) -> jinja2.Environment:
    """The one Jinja setup for sls files and files/ templates: an undefined
    variable is an error, and a file's last newline survives rendering."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(search_path)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        finalize=finalize,
    )


# One environment per directory for the whole process, so a template is
# compiled once however many hosts are rendered (Jinja still reloads a file
# whose mtime changed). Per-render behaviour goes through this context variable.
_render_finalize: contextvars.ContextVar[Callable[[Any], Any] | None] = \
    contextvars.ContextVar("jupyterfab_render_finalize", default=None)


def _finalize_for_this_render(value: Any) -> Any:
    finalize = _render_finalize.get()
    return finalize(value) if finalize else value


@functools.lru_cache(maxsize=64)
def _shared_env(search_path: str) -> jinja2.Environment:
    return make_jinja_env(search_path, finalize=_finalize_for_this_render)


def render_template(search_path: str | Path, template: str, variables: dict[str, Any], *,
                    finalize: Callable[[Any], Any] | None = None) -> str:
    """Render ``template`` (relative to ``search_path``) with the shared environment;
    ``finalize`` sees each ``{{ value }}`` of this render only."""
    with _loading:
        compiled = _shared_env(str(search_path)).get_template(template)
    token = _render_finalize.set(finalize)
    try:
        return compiled.render(variables)
    finally:
        _render_finalize.reset(token)


# A fleet's hosts reach their first render together: without the lock each of them
# missed Jinja's cache and compiled every template itself (16 hosts: 16 compilations,
# a third of a no-op's CPU on the controller). Loading is a cache lookup after that.
_loading = threading.Lock()


def describe_template_error(exc: Exception, path: str | Path, relative_to: str | Path | None = None
                            ) -> str:
    """``files/x.j2, line 3: 'port' is undefined`` from any Jinja failure; file
    names under ``relative_to`` are shown relative to it."""
    filename, line = str(path), getattr(exc, "lineno", None)
    if isinstance(exc, jinja2.TemplateSyntaxError) and exc.filename:
        filename = exc.filename
    elif line is None:
        # Jinja maps template lines into its tracebacks; the innermost template
        # frame is where the error is (which may be an included file).
        for frame in traceback.extract_tb(exc.__traceback__):
            if not frame.filename.endswith(".py") and not frame.filename.startswith("<"):
                filename, line = frame.filename, frame.lineno
    if isinstance(exc, jinja2.TemplateNotFound):
        reason = f"template not found: {exc.name}"
    elif isinstance(exc, jinja2.TemplateSyntaxError):
        reason = f"Jinja syntax error: {exc.message}"
    elif isinstance(exc, jinja2.UndefinedError):
        reason = f"undefined variable: {exc.message}"
    else:
        reason = f"{type(exc).__name__}: {exc}"
    if relative_to is not None:
        try:
            filename = str(Path(filename).relative_to(relative_to))
        except ValueError:
            pass
    return f"{filename}" + (f", line {line}" if line else "") + f": {reason}"


