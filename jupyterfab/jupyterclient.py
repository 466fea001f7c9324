"""Talking to a deployed Jupyter Server through NGINX, as a browser would.

Used by ``invoke verify`` and the tests: a 200 from /api/status proves little
(a 403 proves even less); logging in with the password and running code in a
kernel over a WebSocket proves the whole path works.
"""

from __future__ import annotations

import json
import time
import uuid

import requests
import websocket


class JupyterError(Exception):
    pass


class JupyterSession:
    """A logged-in browser session against ``address`` with the public ``server_name``."""

    def __init__(self, address: str, server_name: str, public_url: str, *,
                 scheme: str = "http", verify: bool | str = True, timeout: float = 15):
        self.base = f"{scheme}://{address}"
        self.server_name = server_name
        self.origin = public_url
        self.http = requests.Session()
        self.http.headers["Host"] = server_name
        self.http.verify = verify
        self.timeout = timeout

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
        r = self.api("POST", "/api/kernels", {"name": "python3"})
        if r.status_code != 201:
            raise JupyterError(f"starting a kernel answered {r.status_code}: {r.text[:200]}")
        kernel = r.json()["id"]
        try:
            return self._execute(kernel, code, timeout)
        finally:
            self.api("DELETE", f"/api/kernels/{kernel}")

    def _execute(self, kernel: str, code: str, timeout: float) -> str:
        session = uuid.uuid4().hex
        ws_url = self.base.replace("http", "ws", 1) + f"/api/kernels/{kernel}/channels?session_id={session}"
        cookies = "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())
        sslopt = {"cert_reqs": 0} if self.http.verify is False else (
            {"ca_certs": self.http.verify} if isinstance(self.http.verify, str) else {})
        ws = websocket.create_connection(
            ws_url, timeout=timeout, host=self.server_name, origin=self.origin,
            header=[f"Cookie: {cookies}", f"X-XSRFToken: {self._xsrf()}"], sslopt=sslopt)
        try:
            msg_id = uuid.uuid4().hex
            ws.send(json.dumps({
                "header": {"msg_id": msg_id, "username": "verify", "session": session,
                           "msg_type": "execute_request", "version": "5.3",
                           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": code, "silent": False, "store_history": False,
                            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
            }))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                msg = json.loads(ws.recv())
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg["msg_type"]
                if kind == "execute_result":
                    return msg["content"]["data"]["text/plain"]
                if kind == "error":
                    raise JupyterError(f"the kernel raised {msg['content']['ename']}: "
                                       f"{msg['content']['evalue']}")
            raise JupyterError(f"no result for {code!r} within {timeout:.0f} s")
        finally:
            ws.close()
