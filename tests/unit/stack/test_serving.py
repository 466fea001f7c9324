"""What the rendered unit, config, site and states mean for the server (docs/security.md,
"Notebook code is the notebook user"): it loads nothing the notebook user can write, and
nothing else can stand in for it. The bytes are the goldens' (test_golden.py); these
tests say which lines matter and why. On a real host: tests/e2e/test_server_pinned.py."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest
from unit_support import UnixHTTPServer

from jupyterfab.engine import sls
from jupyterfab.engine.shell import Secret
from jupyterfab.engine.states.base import Context
from jupyterfab.engine.states.file import render_source
from jupyterfab.inventory import VAR_DEFAULTS, Host
from jupyterfab.stack import deploy, passwords, serving

PREFIX, HOME = "/opt/jupyterfab/", "/home/jupyter/"
INITS = {"systemd": ("jupyter/jupyter.service.j2", "Environment="),
         "upstart": ("jupyter/jupyter.upstart.j2", "env ")}


def context(init: str) -> Context:
    host = Host("jupyter1", "203.0.113.10", vars=dict(VAR_DEFAULTS, allow_plain_http=True))
    variables = {**deploy.plan_host(host).vars, "wheelhouse_local": "", "env_bundle": "", "kernel_bundle": "",
                 "extensions_local": "/nonexistent",
                 "hashed_password": passwords.hash_password(Secret("pinned-test-password"))}
    return Context(host.name, vars=variables, files_dir=deploy.PROJECT / "files", init=init)


def rendered(template: str, init: str = "systemd") -> str:
    return render_source(template, context(init))[0]


def states(init: str) -> dict:
    return {d.id: d for d in sls.load_states(deploy.PROJECT / "states", context(init))}


def refs(decl) -> set[tuple[str, str]]:
    return {(r.kind, r.ref) for r in decl.requisites}


def environment(init: str) -> dict[str, str]:
    template, stanza = INITS[init]
    return dict(line.removeprefix(stanza).split("=", 1)
                for line in rendered(template, init).splitlines() if line.startswith(stanza))


@pytest.mark.parametrize("init", INITS)
def test_jupyters_config_and_data_folders_are_roots_and_what_it_writes_stays_in_the_home(init):
    env = environment(init)
    # where Jupyter finds config files, labextensions, kernelspecs, templates: the
    # "user" folders too (JUPYTER_CONFIG_DIR, JUPYTER_DATA_DIR), else ~/.jupyter and
    # ~/.local/share/jupyter
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_CONFIG_PATH", "JUPYTER_DATA_DIR", "JUPYTER_PATH"):
        assert all(p.startswith(PREFIX) for p in env[name].split(":")), (name, env[name])
    # data the server writes as it runs: where Jupyter always kept it
    for name in ("JUPYTER_RUNTIME_DIR", "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR"):
        assert env[name].startswith(HOME), (name, env[name])
    for name in ("PYTHONPATH", "PYTHONUSERBASE", "PYTHONSTARTUP", "JUPYTER_PLATFORM_DIRS",
                 "JUPYTER_NO_CONFIG", "JUPYTER_ALLOW_INSECURE_WRITES", "JUPYTERLAB_DIR"):
        assert name not in env, name


@pytest.mark.parametrize("init", INITS)
def test_the_servers_python_is_isolated_from_the_users_site_packages_and_variables(init):
    template, _ = INITS[init]
    [command] = [line for line in rendered(template, init).splitlines()
                 if line.startswith(("ExecStart=", "exec "))]
    words = command.removeprefix("ExecStart=").removeprefix("exec ").split()
    # -I: no user site-packages (.pth, usercustomize), no PYTHON* variable, no script folder
    assert words[:3] == ["/opt/jupyterfab/venv/bin/python", "-I", "-u"], words
    assert words[3] == "/opt/jupyterfab/venv/bin/jupyter-lab"


def test_what_the_deploy_writes_for_jupyter_is_where_the_pinned_folders_find_it():
    env, decls = environment("systemd"), states("systemd")
    # the user's kernel environment is still the python3 kernel
    assert decls["kernel_spec"].name == f"{env['JUPYTER_PATH']}/kernels/python3/kernel.json"
    assert decls["lab_settings"].name.startswith(f"{env['JUPYTER_CONFIG_PATH']}/labconfig/")
    # Jupyter's IPython migration would copy ~/.ipython into the config folder at start
    # (failing there: read-only) unless its marker says it was done
    assert decls["jupyter_no_migration"].name == f"{env['JUPYTER_CONFIG_DIR']}/migrated"
    assert ("require", "jupyter_no_migration") in refs(decls["jupyter_service"])


def test_the_config_listens_on_the_socket_never_hops_ports_and_reads_no_templates_from_the_home(tmp_path):
    config = tmp_path / "jupyter_server_config.py"
    config.write_text(rendered("jupyter/jupyter_server_config.py.j2"))
    # loaded as Jupyter loads it (traitlets), in a process of its own: it makes that
    # process undumpable
    probe = (
        "import ctypes, json, sys\n"
        "from traitlets.config.loader import PyFileConfigLoader\n"
        "c = PyFileConfigLoader(sys.argv[1]).load_config()\n"
        "s = c.ServerApp\n"
        "print(json.dumps({'sock': s.get('sock'), 'sock_mode': s.get('sock_mode'),\n"
        "    'port_retries': s.get('port_retries'), 'tcp': sorted(k for k in ('ip', 'port') if k in s),\n"
        "    'basedirs': c.TemplateExporter.get('extra_template_basedirs'),\n"
        "    'notary': c.NotebookNotary.get('data_dir'),\n"
        "    'dumpable': ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)}))\n")
    said = json.loads(subprocess.run([sys.executable, "-c", probe, str(config)], capture_output=True,
                                     text=True, check=True).stdout)
    assert said == {"sock": serving.SOCKET, "sock_mode": "0660", "port_retries": 0, "tcp": [],
                    "basedirs": [], "notary": "/home/jupyter/.local/share/jupyter", "dumpable": 0}


def test_nginx_the_unit_and_the_checks_name_the_same_socket():
    site = rendered("nginx/jupyter.conf.j2")
    unit = rendered("jupyter/jupyter.service.j2")
    assert f"server unix:{serving.SOCKET};" in site
    assert (f"ExecStartPost={serving.CHECK} --wait 90 {serving.SOCKET} $MAINPID\n") in unit
    assert serving.SOCKET.startswith(serving.SOCKET_DIR + "/")


@pytest.mark.parametrize("init", INITS)
def test_only_root_makes_the_sockets_folder_and_only_nginx_and_the_service_open_it(init):
    decls = states(init)
    folder = decls["jupyter_socket_dir"]
    assert (folder.name, folder.args["user"], folder.args["group"], folder.args["mode"]) == (
        serving.SOCKET_DIR, "root", serving.SOCKET_GROUP, 0o2770)
    nginx = decls["nginx_socket_member"]
    assert (nginx.name, nginx.args["groups"], nginx.args["remove_groups"]) == (
        "www-data", (serving.SOCKET_GROUP,), False)
    assert ("watch", "nginx_socket_member") in refs(decls["nginx_service"])   # new workers
    assert ("require", "nginx_socket_member") in refs(decls["nginx_site"])
    unit = rendered(INITS[init][0], init)
    if init == "systemd":
        # a member through the unit only: the notebook user's processes elsewhere are not
        assert "jupyter_socket_member" not in decls
        assert f"SupplementaryGroups={serving.SOCKET_GROUP}\n" in unit
        assert re.search(rf"^ReadWritePaths=.* {re.escape(serving.SOCKET_DIR)}$", unit, re.M)
    else:
        member = decls["jupyter_socket_member"]
        assert (member.name, member.args["groups"]) == ("jupyter", (serving.SOCKET_GROUP,))


# --- the serving check itself (files/jupyter/serving.py.j2), run as the host runs it -------

class Api(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"version": "2.99.0"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def check(tmp_path):
    script = tmp_path / "jupyterfab-serving"
    script.write_text(f"#!{sys.executable} -I\n" + (deploy.PROJECT / "files/jupyter/serving.py.j2").read_text())
    script.chmod(0o755)

    def run(*args: str) -> tuple[int, dict, float]:
        started = time.monotonic()
        done = subprocess.run([str(script), *map(str, args)], capture_output=True, text=True, timeout=60)
        return done.returncode, json.loads(done.stdout), time.monotonic() - started
    return run


def test_the_check_accepts_only_the_process_it_is_told_listening_and_answering_as_jupyter(check, tmp_path):
    sock = tmp_path / "jupyter.sock"
    server = UnixHTTPServer(str(sock), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rc, said, _ = check(sock, os.getpid())
        assert rc == 0 and said == {"ok": True, "why": f"process {os.getpid()} serves {sock}",
                                    "pid": os.getpid(), "version": "2.99.0"}
        rc, said, _ = check(sock, 4242)          # someone else took the socket
        assert rc == 1 and said["pid"] == os.getpid()
        assert said["why"] == (f"{sock} is held by process {os.getpid()}, not by the service's main "
                               "process (4242)")
    finally:
        server.shutdown()
        server.server_close()
    # what a stopped server leaves: a socket nobody listens on
    rc, said, _ = check(sock, os.getpid())
    assert rc == 1 and said["why"] == f"nothing listens on {sock}"


def test_the_check_refuses_what_is_not_a_socket_and_stops_waiting_once_the_pid_is_gone(check, tmp_path):
    path = tmp_path / "jupyter.sock"
    assert check(path, 1)[1]["why"] == f"nothing listens on {path}"
    path.write_text("a file")
    assert check(path, 1)[1]["why"] == f"{path} is not a socket"
    path.unlink()
    dead = subprocess.Popen(["true"])
    dead.wait()
    rc, said, seconds = check("--wait", 60, path, dead.pid)
    assert rc == 1 and said["why"].startswith(f"the service's main process {dead.pid} exited")
    assert seconds < 10, seconds                # not the 60 s it was given
