"""Notebook code is the notebook user, never the server (docs/security.md): on a sandbox
host, as an attacker with the Jupyter password would, through a real kernel (login over
HTTP, REST, kernel WebSocket). Code and JavaScript planted in the home are never loaded
by Jupyter Server itself (kernels may load the user's things: they are the user's), a
kernel cannot write the server's memory, and nothing else can stand in for the server:
a process on the old port gets no request, and `status` and the start check look at
the service's own process. One host, one first deploy for the whole module."""

import json
import re
import shlex
import time

import pytest
from e2e_support import PROJECT, fab_logged, secret_file

from jupyterfab.dev import sandbox
from jupyterfab.engine.runner import open_runner
from jupyterfab.stack import serving
from jupyterfab.verify.jupyterclient import JupyterSession

pytestmark = pytest.mark.e2e
PASSWORD = "e2e-pinned-password"
HOME = "/home/jupyter"
MARKERS = f"{HOME}/e2e-markers"
SERVER_ENV = "/opt/jupyterfab/venv"
IMPOSTOR_LOG = "/root/impostor.log"
IMPOSTOR_UNIT = "jupyterfab-e2e-impostor"

# Run in a kernel: every file Jupyter Server would have read from the home at its start,
# each writing a marker (its pid and argv) when loaded; a labextension, a kernelspec with
# a page, and an nbconvert template in the notebook dir (the server's working directory)
# whose Jinja runs a command.
PLANT = r"""
import json, os, pathlib, sys
home, M = pathlib.Path.home(), "@MARKERS@"
def marker(tag):
    return ("import os, sys\n"
            "os.makedirs(%r, exist_ok=True)\n"
            "open(os.path.join(%r, '%s-%%d' %% os.getpid()), 'w').write(' '.join(sys.argv))\n") % (M, M, tag)
(home / ".jupyter").mkdir(exist_ok=True)
for name in ("jupyter_config", "jupyter_lab_config", "jupyter_server_config", "jupyter_notebook_config"):
    (home / ".jupyter" / f"{name}.py").write_text(marker(name))
site = home / f".local/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
site.mkdir(parents=True, exist_ok=True)
(site / "usercustomize.py").write_text(marker("usercustomize"))
(site / "jupyterfab_e2e_planted.pth").write_text("import os, sys; exec(" + repr(marker("pth")) + ")\n")
lab = home / "notebooks/lab"
lab.mkdir(parents=True, exist_ok=True)
(lab / "index.html.j2").write_text(
    "{{ cycler.__init__.__globals__.os.system('mkdir -p " + M + " && echo nbconvert > "
    + M + "/nbconvert-$PPID') }}{% extends 'base.html.j2' %}\n")
(lab / "conf.json").write_text('{"base_template": "base", "mimetypes": {"text/html": true}}')
(home / "notebooks/planted.ipynb").write_text(json.dumps(
    {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
ext = home / ".local/share/jupyter/labextensions/jupyterfab-e2e-planted"
(ext / "static").mkdir(parents=True, exist_ok=True)
(ext / "package.json").write_text(json.dumps({"name": "jupyterfab-e2e-planted", "version": "1.0.0",
    "jupyterlab": {"_build": {"load": "static/remoteEntry.js", "extension": "./extension"}}}))
(ext / "static/remoteEntry.js").write_text("/* planted */")
spec = home / ".local/share/jupyter/kernels/planted"
spec.mkdir(parents=True, exist_ok=True)
(spec / "kernel.json").write_text(json.dumps({"argv": ["/bin/true"], "display_name": "planted",
                                              "language": "python"}))
(spec / "page.html").write_text("<script>/* planted */</script>")
print("planted")
""".replace("@MARKERS@", MARKERS)

# As root on the host: something listening on the old ports, writing down every request.
IMPOSTOR = r"""
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen(16)
    while True:
        c, _ = s.accept()
        first = c.recv(65536).split(b"\r\n", 1)[0]
        with open(sys.argv[1], "ab") as log:
            log.write(b"%d %s\n" % (port, first))
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        c.close()
for port in (8888, 8889):
    threading.Thread(target=serve, args=(port,), daemon=True).start()
threading.Event().wait()
"""

# As root on the host: a process that took the socket's place while the service is down,
# open to the socket's group (one the server cannot open, it simply replaces).
SOCKET_IMPOSTOR = r"""
import os, socket, sys
if os.path.exists(sys.argv[1]):
    os.unlink(sys.argv[1])      # what the stopped server left
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o660); s.listen(16)
while True:
    c, _ = s.accept(); c.close()
"""


def fab(*args, check=True):
    return fab_logged(*args, check=check, timeout=900)


@pytest.fixture(scope="module")
def stack(sandbox_factory, tmp_path_factory):
    inv = sandbox_factory(1)
    inventory = str(sandbox.workdir_for(PROJECT) / "hosts.yaml")
    secrets = tmp_path_factory.mktemp("pinned")
    first = fab("-H", "sandbox1", "deploy", "--inventory", inventory, "--password-file",
                str(secret_file(secrets, PASSWORD)))
    host = inv.hosts["sandbox1"]
    return {"host": host, "runner": open_runner(host), "inventory": inventory, "first": first,
            "password": PASSWORD, "secrets": secrets}


def task(stack, *args, check=True):
    return fab("-H", "sandbox1", *args, "--inventory", stack["inventory"], check=check)


def session_for(stack) -> JupyterSession:
    session = JupyterSession(stack["host"].address, "jupyter.example.com", "http://jupyter.example.com",
                             timeout=30)
    assert session.login(stack["password"])
    return session


def in_a_kernel(stack, code: str) -> dict:
    session = session_for(stack)
    kernel = session.start_kernel()
    try:
        return session.execute(kernel, code, timeout=60)
    finally:
        session.api("DELETE", f"/api/kernels/{kernel}")


def main_pid(runner) -> str:
    return runner.run("systemctl show -p MainPID --value jupyter").stdout.strip()


def markers(runner) -> dict[str, str]:
    """Every marker written so far: name (TAG-PID) -> the argv of the process that loaded it."""
    out = runner.run(f"cd {MARKERS} 2>/dev/null && for f in *; do [ -f \"$f\" ] && "
                     "printf '%s\\t%s\\n' \"$f\" \"$(cat \"$f\")\"; done").stdout
    return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)


def by_the_server(runner) -> dict[str, str]:
    """The markers the service's main process wrote: none may exist."""
    pid = main_pid(runner)
    return {name: argv for name, argv in markers(runner).items()
            if name.endswith(f"-{pid}") or "jupyter-lab" in argv}


@pytest.fixture(scope="module")
def planted(stack):
    """Everything planted by a kernel, then the server restarted by `fab restart`, with
    user site-packages let into the server's environment (as a conda environment does:
    a venv keeps them out by itself), so that only the server's own isolation keeps them
    out. Put back afterwards."""
    runner = stack["runner"]
    assert in_a_kernel(stack, PLANT)["stdout"].strip() == "planted"
    cfg = f"$(readlink -f {SERVER_ENV})/pyvenv.cfg"
    runner.run(f"sed -i 's/^include-system-site-packages = false/include-system-site-packages = true/' {cfg}")
    try:
        task(stack, "restart")
        yield runner
    finally:
        runner.run(f"sed -i 's/^include-system-site-packages = true/include-system-site-packages = false/' {cfg}")


def test_a_second_deploy_changes_nothing(stack):
    again = task(stack, "deploy")
    assert "sandbox1  ok, no changes" in again.stdout and "0 states changed" in again.stdout, again.stdout


def test_config_and_python_planted_in_the_home_never_run_in_the_server(stack, planted):
    runner = planted
    assert runner.run(f"test -f {HOME}/.jupyter/jupyter_config.py").ok       # the kernel wrote them
    assert by_the_server(runner) == {}, markers(runner)
    said = runner.run(f"cat /proc/{main_pid(runner)}/environ | tr '\\0' '\\n'").stdout
    print(f"markers (kernels may load the user's files): {sorted(markers(runner))}\n"
          f"the server's Jupyter variables: {sorted(v for v in said.splitlines() if v.startswith('JUPYTER'))}")


def test_labextensions_kernelspecs_and_templates_from_the_home_are_not_served(stack, planted):
    session = session_for(stack)
    assert "jupyterfab-e2e-planted" not in session.get("/lab").text      # its page config
    assert session.get("/lab/extensions/jupyterfab-e2e-planted/static/remoteEntry.js").status_code == 404
    specs = session.api("GET", "/api/kernelspecs").json()["kernelspecs"]
    assert list(specs) == ["python3"], list(specs)                         # the deploy's only
    assert f"{HOME}/.local/share/jupyterfab/kernel-env/bin/python" in specs["python3"]["spec"]["argv"]
    assert session.get("/kernelspecs/planted/page.html").status_code == 404
    # "Export as HTML" renders nbconvert's own templates, not one in the notebook dir
    export = session.http.get(session.base + "/nbconvert/html/planted.ipynb?download=false", timeout=60,
                              headers={"Referer": session.origin + "/lab"})
    assert export.status_code == 200, export.text[:300]
    assert not [m for m in markers(planted) if m.startswith("nbconvert-")], markers(planted)


def test_what_the_server_writes_still_lands_in_the_home(stack, planted):
    session = session_for(stack)
    theme = "@jupyterlab/apputils-extension:themes"
    r = session.api("PUT", f"/lab/api/settings/{theme}", {"raw": '{"theme": "JupyterLab Dark"}'})
    assert r.status_code == 204, r.text
    assert planted.run(f"test -f {HOME}/.jupyter/lab/user-settings/@jupyterlab/apputils-extension/"
                       "themes.jupyterlab-settings").ok
    assert planted.run(f"test -f {HOME}/.local/share/jupyter/runtime/jupyter_cookie_secret").ok


def test_a_kernel_cannot_open_the_servers_memory(stack):
    said = in_a_kernel(stack, (
        "import os\n"
        "try:\n"
        "    open(f'/proc/{os.getppid()}/mem', 'r+b').close(); print('opened')\n"
        "except OSError as e:\n"
        "    print(type(e).__name__)\n"))["stdout"].strip()
    assert said in ("PermissionError", "FileNotFoundError"), said      # (hidden: ProtectProc=invisible)


def test_after_rotate_password_and_a_deploy_the_planted_files_still_never_run_in_the_server(stack, planted):
    secret = secret_file(stack["secrets"], "e2e-pinned-rotated", name="rotated")
    task(stack, "rotate-password", "--password-file", str(secret))
    stack["password"] = "e2e-pinned-rotated"
    assert by_the_server(planted) == {}, markers(planted)
    task(stack, "deploy", "--password-file", str(secret), "--set", "cull_idle_timeout=1800")   # restarts
    assert by_the_server(planted) == {}, markers(planted)
    assert in_a_kernel(stack, "print(6 * 7)")["stdout"].strip() == "42"


def test_outside_the_service_the_notebook_user_can_neither_open_nor_replace_the_socket(stack):
    runner = stack["runner"]
    # the notebook user's process outside the unit (an SSH login, cron, an escaped process)
    for verb in ("connect", "bind"):
        said = runner.run(f"cd / && runuser -u jupyter -- python3 -I -c \"import socket; "
                          f"getattr(socket.socket(socket.AF_UNIX), '{verb}')('{serving.SOCKET}')\"")
        assert not said.ok and "PermissionError" in said.stderr, (verb, said.stdout, said.stderr)
    # and the server listens on no TCP port
    pid = main_pid(runner)
    assert f"pid={pid}," not in runner.run("ss -tlnp").stdout


def impostor_requests(runner) -> list[str]:
    return runner.run(f"cat {IMPOSTOR_LOG} 2>/dev/null").stdout.splitlines()


def test_a_process_on_the_old_ports_gets_no_request_and_status_looks_at_the_service_itself(stack):
    runner = stack["runner"]
    runner.run(f"rm -f {IMPOSTOR_LOG}")
    task(stack, "stop")
    started = runner.run(f"systemd-run --unit={IMPOSTOR_UNIT} --collect python3 -c "
                         f"{shlex.quote(IMPOSTOR)} {IMPOSTOR_LOG}")
    assert started.ok, started.stderr
    try:
        deadline = time.monotonic() + 10
        while "127.0.0.1:8888" not in runner.run("ss -tln").stdout:
            assert time.monotonic() < deadline, "the impostor did not listen"
            time.sleep(0.2)
        task(stack, "start")
        session = JupyterSession(stack["host"].address, "jupyter.example.com", "http://jupyter.example.com")
        logged_in = session.login(stack["password"])
        assert impostor_requests(runner) == []
        assert logged_in and session.run_code("6 * 7") == "42"     # through NGINX, to Jupyter
        # with Jupyter stopped, NGINX has nowhere to go: 502, never the impostor
        task(stack, "stop")
        session = JupyterSession(stack["host"].address, "jupyter.example.com", "http://jupyter.example.com")
        assert session.get("/login").status_code == 502
        status = task(stack, "status", check=False)
        assert status.returncode == 1
        assert "service:  jupyter inactive (dead)" in status.stdout
        assert f"serving:  NO: nothing listens on {serving.SOCKET}" in status.stdout
        assert impostor_requests(runner) == []
    finally:
        runner.run(f"systemctl stop {IMPOSTOR_UNIT}")
        task(stack, "start", check=False)


def test_a_process_holding_the_socket_is_never_taken_for_the_service(stack):
    """Root's (the folder is no one else's): what the start check and `status` do when
    the socket answers as another process than the unit's own."""
    runner = stack["runner"]
    task(stack, "stop")
    started = runner.run(f"systemd-run --unit={IMPOSTOR_UNIT} --collect python3 -c "
                         f"{shlex.quote(SOCKET_IMPOSTOR)} {serving.SOCKET}")
    assert started.ok, started.stderr
    try:
        impostor = runner.run(f"systemctl show -p MainPID --value {IMPOSTOR_UNIT}").stdout.strip()
        deadline = time.monotonic() + 10
        while json.loads(runner.run(serving.check(0).text).stdout or "{}").get("pid") != int(impostor):
            assert time.monotonic() < deadline, "the impostor did not listen"
            time.sleep(0.2)
        start = task(stack, "start", check=False)
        assert start.returncode == 1, start.stdout        # Jupyter cannot take the socket: no "started"
        status = task(stack, "status", check=False)
        assert status.returncode == 1
        assert re.search(rf"serving:  NO: {re.escape(serving.SOCKET)} is held by process {impostor}, "
                         r"not by the service's main process", status.stdout), status.stdout
    finally:
        runner.run(f"systemctl stop {IMPOSTOR_UNIT}; systemctl reset-failed jupyter")
    task(stack, "start")
    status = task(stack, "status")
    pid = main_pid(runner)
    assert f"serving:  yes, process {pid} serves {serving.SOCKET}" in status.stdout
    assert json.loads(runner.run(f"{serving.CHECK} {serving.SOCKET} {pid}").stdout)["ok"]
