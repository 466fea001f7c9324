"""TCP_NODELAY on Jupyter Server's WebSockets.

Jupyter Server never turns Nagle's algorithm off on its WebSockets, and Tornado
leaves it on. A cell's reply is several small messages (status busy, the input,
the result, the reply, status idle): with Nagle on, each one after the first
waits for the client's ACK of the one before, and clients delay their ACKs by up
to 40 ms. So a trivial cell takes ~48 ms instead of ~6 ms.

At load this extension finds every WebSocket handler the server routes to (the
kernel channels, the terminals and the event stream where those exist, and any
other extension's loaded before this one) and makes its ``open`` call
``set_nodelay(True)`` first, as Tornado's documentation advises. Nothing else
changes: no new handlers, no settings.
"""

from __future__ import annotations

import functools

from tornado.routing import Router, RuleRouter
from tornado.web import Application
from tornado.websocket import WebSocketHandler

__version__ = "1.0.0"
_MARK = "_jupyterfab_nodelay"


def _jupyter_server_extension_points():
    return [{"module": "jupyterfab_nodelay"}]


def _load_jupyter_server_extension(serverapp) -> None:
    patched = nodelay_websockets(serverapp.web_app)
    serverapp.log.info("jupyterfab_nodelay: TCP_NODELAY on %s",
                       ", ".join(sorted(patched)) or "no WebSocket handlers")


def nodelay_websockets(app: Application) -> list[str]:
    """Makes every WebSocket handler class routed by ``app`` open with TCP_NODELAY;
    returns their names. Calling it again changes nothing."""
    names = []
    for handler in _handler_classes(app.default_router):
        if isinstance(handler, type) and issubclass(handler, WebSocketHandler):
            if not getattr(handler.open, _MARK, False):
                handler.open = _opening_with_nodelay(handler.open)
            names.append(f"{handler.__module__}.{handler.__qualname__}")
    return names


def _handler_classes(router: Router):
    for rule in getattr(router, "rules", []) if isinstance(router, RuleRouter) else []:
        if isinstance(rule.target, Router):
            yield from _handler_classes(rule.target)
        else:
            yield rule.target


def _opening_with_nodelay(open_):
    @functools.wraps(open_)
    def open(self, *args, **kwargs):
        self.set_nodelay(True)
        return open_(self, *args, **kwargs)

    setattr(open, _MARK, True)
    return open
