"""jupyterfab_nodelay against a real Jupyter Server: the wheel the deploy ships,
the config the deploy writes, a real kernel, terminal and event WebSocket.

The check is on the server's side of each connection: the server's own socket is
borrowed into this process and asked for TCP_NODELAY (tests/support/sockopts.py). The newest Jupyter Server (this venv's) runs always;
the lowest supported one (2.14.0, with Tornado 6.2) needs a venv of its own, so it
is opt-in: JUPYTERFAB_SLOW_TESTS=1 (about 30 s the first time).
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from support import sockopts
from unit_support import PROJECT

from jupyterfab.engine import sls
from jupyterfab.engine.shell import Secret
from jupyterfab.stack import passwords
from jupyterfab.stack.envs import serverext
from jupyterfab.verify.jupyterclient import JupyterSession, percentile

PASSWORD = "nodelay-test-password"
LOWEST = ["jupyter_server==2.14.0", "tornado==6.2", "ipykernel"]


@pytest.fixture(scope="module")
def extension_site(tmp_path_factory) -> Path:
    """The wheel the deploy installs, unpacked (a pure-Python wheel's install)."""
    wheel = serverext.wheel(cache=tmp_path_factory.mktemp("wheel"))
    site = tmp_path_factory.mktemp("site")
    zipfile.ZipFile(wheel).extractall(site)
    return site


@pytest.fixture(scope="module")
def lowest_python(tmp_path_factory) -> str:
    if not os.environ.get("JUPYTERFAB_SLOW_TESTS"):
        pytest.skip("opt-in (JUPYTERFAB_SLOW_TESTS=1): builds a venv with " + " ".join(LOWEST))
    venv = Path(os.environ.get("JUPYTERFAB_LOWEST_SERVER_VENV", tmp_path_factory.mktemp("lowest") / "venv"))
    if not (venv / ".complete").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", *LOWEST], check=True)
        (venv / ".complete").touch()
    return str(venv / "bin/python")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """Jupyter Server in a subprocess with the deploy's own config file: on its Unix socket
    as deployed (reached through a loopback relay, as NGINX would), or with ``tcp`` on a
    loopback port instead, where there is a Nagle to turn off."""

    def __init__(self, python: str, site: Path, folder: Path, *, nodelay: bool, tcp: bool = True):
        self.port = free_port()
        self.sock = folder / "jupyter.sock"
        config = folder / "jupyter_server_config.py"
        config.write_text(sls.render_template(PROJECT / "files", "jupyter/jupyter_server_config.py.j2", {
            "jupyter_socket": str(self.sock), "notebook_dir": str(folder), "public_url": "http://jupyter.test",
            "hashed_password": passwords.hash_password(Secret(PASSWORD)), "env_provider": "venv",
            "nodelay": nodelay, "cookie_secret_file": str(folder / "runtime/jupyter_cookie_secret"),
            "notary_dir": str(folder / "data"),
            # the server's own kernel (no user environment here), kernels never culled
            "kernel_env": False, "cull_idle_timeout": 0, "resource_usage": False})
            # this test borrows the server's sockets (support/sockopts.py): it needs the
            # server, which the deploy's config makes undumpable, dumpable again
            + "\nctypes.CDLL(None).prctl(4, 1, 0, 0, 0)\n")
        env = {"PATH": os.environ["PATH"], "HOME": str(folder), "PYTHONPATH": str(site),
               **{f"JUPYTER_{d}_DIR": str(folder / d.lower()) for d in ("CONFIG", "DATA", "RUNTIME")}}
        self.log = (folder / "server.log").open("w+")
        listen = ["--ServerApp.sock=", f"--ServerApp.port={self.port}"] if tcp else []
        self.proc = subprocess.Popen(
            [python, "-m", "jupyter_server", f"--config={config}", *listen,
             *(["--allow-root"] if os.geteuid() == 0 else [])],
            env=env, cwd=folder, stdout=self.log, stderr=subprocess.STDOUT)
        port = self.port if tcp else relay_to(str(self.sock))
        self.session = JupyterSession("127.0.0.1", "jupyter.test", "http://jupyter.test", port=port)
        deadline = time.monotonic() + 90
        while True:
            try:
                if self.session.get("/login").status_code == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the server did not start:\n{self.output()}")
            time.sleep(0.2)
        assert self.session.login(PASSWORD), self.output()

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def nodelay(self, client: socket.socket) -> int:
        """TCP_NODELAY on the server's end of ``client``'s connection."""
        [value] = [value for local, remote, value in sockopts.connections(self.proc.pid, self.port)
                   if local == self.port and remote == client.getsockname()[1]]
        return value

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def relay_to(path: str) -> int:
    """A loopback port whose every connection is piped to the Unix socket ``path``
    (a thread per direction), as NGINX proxies to it."""
    listener = socket.create_server(("127.0.0.1", 0))

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def serve() -> None:
        while True:
            client, _ = listener.accept()
            upstream = socket.socket(socket.AF_UNIX)
            try:
                upstream.connect(path)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


@pytest.fixture
def server(extension_site, tmp_path):
    started = []

    def start(python: str = sys.executable, *, nodelay: bool = True, tcp: bool = True) -> Server:
        folder = tmp_path / f"server{len(started)}"
        folder.mkdir()
        started.append(Server(python, extension_site, folder, nodelay=nodelay, tcp=tcp))
        return started[-1]

    yield start
    for s in started:
        s.stop()


def websockets(srv: Server) -> dict:
    """A kernel's, a terminal's and the event stream's WebSocket, open."""
    s = srv.session
    kernel = s.api("POST", "/api/kernels", {"name": "python3"}).json()["id"]
    terminal = s.api("POST", "/api/terminals").json()["name"]
    return {"kernel": s.kernel_channels(kernel, 30),
            "terminal": s.websocket(f"/terminals/websocket/{terminal}", 30),
            "events": s.websocket("/api/events/subscribe", 30)}


def assert_nodelay(srv: Server, expected: int) -> None:
    sockets = websockets(srv)
    try:
        got = {name: srv.nodelay(ws.sock) for name, ws in sockets.items()}
        assert got == dict.fromkeys(sockets, expected), srv.output()
    finally:
        for ws in sockets.values():
            ws.close()


def test_the_newest_server_sets_tcp_nodelay_on_kernel_terminal_and_event_websockets(server):
    srv = server()
    assert_nodelay(srv, 1)
    assert "jupyterfab_nodelay: TCP_NODELAY on" in srv.output()


def test_with_nodelay_false_the_server_leaves_nagle_on(server):
    srv = server(nodelay=False)
    assert_nodelay(srv, 0)          # what stock Jupyter Server does: the check can fail
    assert "jupyterfab_nodelay" not in srv.output()


def test_a_cell_on_loopback_is_not_held_back_by_nagle(server):
    srv = server()
    times = srv.session.cell_round_trips(count=40)
    # Nagle + delayed ACKs hold each reply ~40 ms; without them it is a few ms
    assert percentile(times, 50) < 0.030, times


def test_code_run_in_a_new_kernel_gives_its_result_and_the_kernel_goes(server):
    srv = server()
    assert srv.session.run_code("6 * 7") == "42"
    assert srv.session.api("GET", "/api/kernels").json() == []


def test_on_its_unix_socket_as_deployed_every_websocket_opens_with_the_extension_on(server):
    # a Unix socket has no Nagle: the extension's set_nodelay must leave it be, not fail
    srv = server(tcp=False)
    assert stat.S_ISSOCK(srv.sock.stat().st_mode) and stat.S_IMODE(srv.sock.stat().st_mode) == 0o660
    sockets = websockets(srv)
    for ws in sockets.values():
        ws.close()
    assert srv.session.run_code("6 * 7") == "42"
    assert "jupyterfab_nodelay: TCP_NODELAY on" in srv.output()
    assert "Traceback" not in srv.output() and "Exception in callback" not in srv.output(), srv.output()


@pytest.mark.slow
def test_the_lowest_supported_server_sets_tcp_nodelay_too(server, lowest_python):
    srv = server(lowest_python)
    assert_nodelay(srv, 1)


@pytest.mark.slow
def test_the_lowest_supported_server_without_the_extension_leaves_nagle_on(server, lowest_python):
    assert_nodelay(server(lowest_python, nodelay=False), 0)
