"""Talking to a deployed Jupyter Server through NGINX, as a browser would.

Used by ``invoke verify`` and the tests: a 200 from /api/status proves little
(a 403 proves even less); logging in with the password and running code in a
kernel over a WebSocket proves the whole path works.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import time
import uuid
from urllib.parse import urlsplit

import requests
import websocket
from requests.adapters import HTTPAdapter

from jupyterfab.engine.errors import ServiceError


class JupyterError(ServiceError):
    pass


class OriginAdapter(HTTPAdapter):
    """Connects to the origin's address while speaking to it as ``server_name``:
    Host header, TLS SNI and the certificate's name check all use the public name,
    as they would through DNS. ``source_address`` picks the address we connect
    from (to test the origin's lockdown from inside and outside Cloudflare's ranges)."""

    def __init__(self, server_name: str, source_address: str | None = None):
        self._pool_settings = {"server_hostname": server_name, "assert_hostname": server_name}
        if source_address:
            self._pool_settings["source_address"] = (source_address, 0)
        super().__init__()

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        super().init_poolmanager(connections, maxsize, block, **{**pool_kwargs, **self._pool_settings})


class JupyterSession:
    """A logged-in browser session against ``address`` with the public ``server_name``.

    The scheme is ``public_url``'s. ``verify`` is True (the system's CAs), a CA
    file, or False; ``source_address`` is the local address to connect from.
    """

    def __init__(self, address: str, server_name: str, public_url: str, *,
                 verify: bool | str = True, source_address: str | None = None, timeout: float = 15,
                 port: int | None = None):
        scheme = urlsplit(public_url).scheme or "http"
        self.address = address
        self.port = port or (443 if scheme == "https" else 80)
        self.base = f"{scheme}://{address}" + (f":{port}" if port else "")
        self.server_name = server_name
        self.origin = public_url.rstrip("/")
        self.source_address = source_address
        self.http = requests.Session()
        # Else $REQUESTS_CA_BUNDLE (and proxy variables) silently override `verify`:
        # requests lets the environment win over a Session's own setting.
        self.http.trust_env = False
        adapter = OriginAdapter(server_name, source_address)
        self.http.mount("http://", adapter)
        self.http.mount("https://", adapter)
        self.http.headers["Host"] = server_name
        self.http.verify = verify
        self.timeout = timeout

    def tls_context(self) -> ssl.SSLContext:
        """The TLS checks this session makes: its CA file (or the system's), the public name."""
        verify = self.http.verify
        context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
        if verify is False:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def get(self, path: str, **kw) -> requests.Response:
        return self.http.get(self.base + path, timeout=self.timeout, allow_redirects=False, **kw)

    def _xsrf(self) -> str:
        return self.http.cookies.get("_xsrf", "")

    def login(self, password: str) -> bool:
        """True when the server accepted the password (it redirects and sets a login cookie)."""
        page = self.get("/login")
        if page.status_code != 200:
            raise JupyterError(f"GET /login answered {page.status_code}")
        r = self.http.post(self.base + "/login?next=%2Flab", data={"password": password, "_xsrf": self._xsrf()},
                           headers={"Origin": self.origin, "Referer": self.origin + "/login"},
                           timeout=self.timeout, allow_redirects=False)
        return r.status_code in (302, 303) and self.get("/api/status").status_code == 200

    def api(self, method: str, path: str, body: dict | None = None) -> requests.Response:
        return self.http.request(method, self.base + path, json=body, timeout=self.timeout,
                                 headers={"X-XSRFToken": self._xsrf(), "Origin": self.origin})

    def run_code(self, code: str, timeout: float = 60) -> str:
        """Start a kernel, run ``code`` over the kernel WebSocket, return its text result."""
        kernel = self.start_kernel()
        try:
            return self.run_in(kernel, code, timeout)
        finally:
            self.api("DELETE", f"/api/kernels/{kernel}")

    def run_in(self, kernel: str, code: str, timeout: float = 60) -> str:
        """Run ``code`` in a running kernel over a WebSocket of its own; its text result."""
        return self.execute(kernel, code, timeout)["result"]

    def execute(self, kernel: str, code: str, timeout: float = 60, *, wait: bool = True) -> dict:
        """``run_cell_output`` in a running kernel over a WebSocket of its own; with
        ``wait=False`` only sends ``code`` (the kernel stays busy with it) and hangs up."""
        with contextlib.closing(self.kernel_channels(kernel, timeout)) as ws:
            if not wait:
                _send_execute(ws, code)
                return {"stdout": "", "result": ""}
            return run_cell_output(ws, code, timeout)

    def start_kernel(self, name: str = "python3") -> str:
        r = self.api("POST", "/api/kernels", {"name": name})
        if r.status_code != 201:
            raise JupyterError(f"starting a kernel answered {r.status_code}: {r.text[:200]}")
        return r.json()["id"]

    def websocket(self, path: str, timeout: float = 60) -> websocket.WebSocket:
        """A WebSocket to ``path`` through NGINX, logged in as this session."""
        ws_url = self.base.replace("http", "ws", 1) + path
        cookies = "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())
        # Our own socket (websocket-client uses a given socket as it is): to the
        # origin's address, from our source address, TLS as server_name.
        connected = socket.create_connection(
            (self.address, self.port), timeout=timeout,
            source_address=(self.source_address, 0) if self.source_address else None)
        if urlsplit(self.base).scheme == "https":
            connected = self.tls_context().wrap_socket(connected, server_hostname=self.server_name)
        return websocket.create_connection(
            ws_url, timeout=timeout, host=self.server_name, origin=self.origin, socket=connected,
            header=[f"Cookie: {cookies}", f"X-XSRFToken: {self._xsrf()}"])

    def kernel_channels(self, kernel: str, timeout: float = 60) -> websocket.WebSocket:
        """The kernel's WebSocket, as JupyterLab opens it (and reopens it after a drop)."""
        return self.websocket(f"/api/kernels/{kernel}/channels?session_id={uuid.uuid4().hex}", timeout)

    def cell_round_trips(self, count: int = 200, code: str = "i * 2", timeout: float = 60) -> list[float]:
        """Runs ``code`` ``count`` times in a new kernel over one WebSocket, as a person
        re-running a cell; each figure is the seconds from sending the execute request
        until the cell is done as JupyterLab sees it (the execute reply and the kernel's
        idle status both arrived)."""
        kernel = self.start_kernel()
        try:
            with contextlib.closing(self.kernel_channels(kernel, timeout)) as ws:
                run_cell_output(ws, "i = 21", timeout)        # the kernel is up, `i` exists
                return [_run_cell(ws, code, timeout) for _ in range(count)]
        finally:
            self.api("DELETE", f"/api/kernels/{kernel}")


def _send_execute(ws: websocket.WebSocket, code: str) -> str:
    """Sends an execute request for ``code``; its message id."""
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "username": "verify", "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3",
                   "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
    }))
    return msg_id


def _next_message(ws: websocket.WebSocket, deadline: float, too_late: str) -> dict:
    """The kernel's next message, or JupyterError(``too_late``) once ``time.monotonic()``
    passes ``deadline``. The server's WebSocket pings come back here (and are answered)
    rather than inside ``ws.recv()``: it swallows them, and with a ping every 30 s its
    socket timeout never fires, so a kernel that never answers would be waited on forever."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise JupyterError(too_late)
        ws.settimeout(left)
        try:
            opcode, data = ws.recv_data(control_frame=True)
        except websocket.WebSocketTimeoutException:
            continue
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise JupyterError(f"the server closed the kernel's WebSocket ({too_late})")
        if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
            return json.loads(data)


def _run_cell(ws: websocket.WebSocket, code: str, timeout: float) -> float:
    """Seconds until ``code``'s execute reply and the kernel's idle status came back."""
    started = time.perf_counter()
    run_cell_output(ws, code, timeout)
    return time.perf_counter() - started


def percentile(samples: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``samples``, nearest rank (pure)."""
    ordered = sorted(samples)
    rank = max(1, -(-len(ordered) * q // 100))      # ceil(n*q/100), at least the first
    return ordered[int(rank) - 1]


def execute(ws: websocket.WebSocket, code: str, timeout: float = 60) -> str:
    """Run ``code`` over an open kernel WebSocket; its text result (or the error it raised)."""
    return run_cell_output(ws, code, timeout)["result"]


def _not_run(code: str, reply: dict) -> str:
    """Why a cell's execute reply says it did not run: its error, or the kernel aborting it
    (ipykernel aborts requests while it recovers from an error or an interrupt)."""
    if reply.get("status") == "error":
        return f"the kernel raised {reply.get('ename')}: {reply.get('evalue')}"
    return f"the kernel did not run {code[:60]!r}: its reply says {reply.get('status')!r}"


def run_cell_output(ws: websocket.WebSocket, code: str, timeout: float = 60) -> dict:
    """Run ``code`` over an open kernel WebSocket until JupyterLab would call the cell
    done (execute reply and idle status): ``{"stdout": both streams, "result": its text
    result or ""}``. JupyterError when the code raises, or when the kernel dies under
    it (the server says it is restarting or dead: ``"died"`` in the message)."""
    msg_id = _send_execute(ws, code)
    out = {"stdout": "", "result": ""}
    replied = idle = False
    deadline = time.monotonic() + timeout
    while not (replied and idle):
        msg = _next_message(ws, deadline, f"{code!r} did not finish within {timeout:.0f} s")
        kind = msg["msg_type"]
        if kind == "status" and msg["content"].get("execution_state") in ("restarting", "dead"):
            raise JupyterError(f"the kernel died ({msg['content']['execution_state']}) while "
                               f"running {code[:60]!r}; it printed: {out['stdout'][-300:]!r}")
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if kind == "stream":
            out["stdout"] += msg["content"]["text"]
        elif kind == "execute_result":
            out["result"] = msg["content"]["data"]["text/plain"]
        elif kind == "error":
            raise JupyterError(f"the kernel raised {msg['content']['ename']}: {msg['content']['evalue']}")
        elif kind == "execute_reply" and msg["content"].get("status") != "ok":
            raise JupyterError(_not_run(code, msg["content"]))
        replied = replied or kind == "execute_reply"
        idle = idle or (kind == "status" and msg["content"]["execution_state"] == "idle")
    return out
