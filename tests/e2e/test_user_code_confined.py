"""Notebook code is the notebook user (issue 28, findings 2 and 3), as an attacker with
the Jupyter password tries it, through a real kernel on a sandbox host:

- a ``.pth`` file planted in the kernel environment runs whenever that environment's
  Python starts; the deploy's probe, its pip install, ``fab kernel-env`` and its
  ``--reset`` start it. Each time it must be inside a transient unit confined like
  jupyter.service (its cgroup, NoNewPrivs 1, a private /tmp), and whatever it leaves
  running must be gone when the step ends;
- an ``authorized_keys`` a kernel writes gives no way in over SSH (the account's shell
  is nologin and sshd refuses it), while Jupyter's terminals and a kernel's ``!cmd``
  still get a shell.

One host, one first deploy for the module."""

import json
import re
import time

import paramiko
import pytest
from e2e_support import PROJECT, run_tool, secret_file

from jupyterfab import sandbox
from jupyterfab.jupyterclient import JupyterSession
from jupyterfab.runner import open_runner

pytestmark = pytest.mark.e2e
PASSWORD = "e2e-confined-password"
HOME = "/home/jupyter"
KERNEL_ENV = f"{HOME}/.local/share/jupyterfab/kernel-env"
SITE = f"{KERNEL_ENV}/lib/python3.11/site-packages"
RECORDS = f"{HOME}/.e2e-pth-records"
SLEEP = "3117"          # the sleep the planted code leaves behind: `sleep 3117`

# Runs at every start of the kernel environment's Python (site imports it for the .pth
# line): notes where it runs, tries to leave a file in the shared /tmp and /var/tmp,
# and leaves a process behind in a session of its own.
RECORDER = f'''
import json, os, subprocess, sys

def _record():
    me = os.getpid()
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    wrote = {{}}
    for folder in ("/tmp", "/var/tmp"):
        path = folder + "/e2e-pth-" + str(me)
        try:
            with open(path, "w") as f:
                f.write("planted")
            wrote[folder] = path
        except OSError as exc:
            wrote[folder] = "refused: " + str(exc)
    sleeper = subprocess.Popen(["sleep", "{SLEEP}"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    os.makedirs("{RECORDS}", exist_ok=True)
    with open("{RECORDS}/" + str(me) + ".json", "w") as f:
        json.dump({{"argv": sys.argv, "cgroup": open("/proc/self/cgroup").read(),
                   "no_new_privs": status["NoNewPrivs"].strip(), "cap_bnd": status["CapBnd"].strip(),
                   "wrote": wrote, "sleeper": sleeper.pid}}, f)

try:
    _record()
except Exception:
    pass
'''


def fab(*args, check=True):
    proc = run_tool("fab", *args, check=False, timeout=1500)
    print(f"$ fab {' '.join(args)}  ({proc.seconds:.1f} s, exit {proc.returncode})\n{proc.stdout}\n{proc.stderr}")
    if check and proc.returncode != 0:
        raise AssertionError(f"fab {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def stack(sandbox_factory, tmp_path_factory):
    inv = sandbox_factory(1)
    work = tmp_path_factory.mktemp("confined")
    inventory = str(sandbox.workdir_for(PROJECT) / "hosts.yaml")
    secret = secret_file(work, PASSWORD)
    fab("-H", "sandbox1", "deploy", "--inventory", inventory, "--password-file", str(secret))
    host = inv.hosts["sandbox1"]
    runner = open_runner(host)
    yield {"host": host, "runner": runner, "inventory": inventory, "work": work}
    runner.close()


def session_for(stack) -> JupyterSession:
    session = JupyterSession(stack["host"].address, "jupyter.example.com", "http://jupyter.example.com",
                             timeout=30)
    assert session.login(PASSWORD)
    return session


def in_a_kernel(stack, code: str) -> str:
    session = session_for(stack)
    kernel = session.start_kernel()
    try:
        return session.execute(kernel, code, timeout=60)["stdout"]
    finally:
        session.api("DELETE", f"/api/kernels/{kernel}")


def unit_of(cgroup: str) -> str:
    """The systemd cgroup path in /proc/PID/cgroup (v2's 0:: line, or v1's name=systemd)."""
    lines = dict(line.split(":", 2)[1:] for line in cgroup.splitlines() if line.count(":") >= 2)
    return lines.get("name=systemd") or lines.get("", "?")


def records(runner) -> list[dict]:
    out = runner.run(f'for f in {RECORDS}/*.json; do [ -f "$f" ] && cat "$f" && echo; done').stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def check_every_start_was_confined(runner, task: str) -> list[dict]:
    found = records(runner)
    assert found, f"{task}: the kernel environment's Python never started"
    for record in found:
        unit = unit_of(record["cgroup"])
        what = f"{task}: {' '.join(record['argv'])[:120]!r} ran in {unit}, NoNewPrivs {record['no_new_privs']}"
        print(what)
        assert re.fullmatch(r"/system\.slice/run-u\d+\.service", unit), what
        assert record["no_new_privs"] == "1", what
        assert record["cap_bnd"] == "0000000000000000", what
    # what it wrote in /tmp and /var/tmp was its own private copy, gone with the unit
    left = runner.run("ls /tmp/e2e-pth-* /var/tmp/e2e-pth-* 2>/dev/null").stdout.split()
    assert left == [], f"{task}: the planted code wrote into the host's shared /tmp: {left}"
    # and nothing it started outlived the step
    time.sleep(1)
    lingering = runner.run(f"pgrep -a -x sleep | grep ' {SLEEP}$' || true").stdout.strip()
    assert lingering == "", f"{task}: the planted code's process outlived the step: {lingering}"
    return found


def forget_records(runner):
    runner.run(f"rm -rf {RECORDS} /tmp/e2e-pth-* /var/tmp/e2e-pth-*; pkill -x -f 'sleep {SLEEP}' || true")


def test_a_pth_in_the_kernel_environment_never_runs_outside_the_units_confinement(stack):
    runner = stack["runner"]
    planted = in_a_kernel(stack, (
        f"open('{SITE}/zz_e2e_recorder.py', 'w').write({RECORDER!r})\n"
        f"open('{SITE}/zz_e2e_recorder.pth', 'w').write('import zz_e2e_recorder\\n')\n"
        "print('planted')"))
    assert "planted" in planted
    forget_records(runner)
    # A requirement the environment lacks: the probe asks its Python (its .dist-info
    # folder is not there), then its pip installs it.
    out = fab("-H", "sandbox1", "deploy", "--inventory", stack["inventory"], "--set", "python_packages=tabulate")
    assert re.search(r"kernel_env \(pip\.installed\) changed", out.stderr), out.stderr
    check_every_start_was_confined(runner, "deploy")
    forget_records(runner)
    fab("-H", "sandbox1", "kernel-env", "--inventory", stack["inventory"], "--set", "python_packages=tabulate")
    check_every_start_was_confined(runner, "kernel-env")
    forget_records(runner)
    fab("-H", "sandbox1", "kernel-env", "--reset", "--yes", "--inventory", stack["inventory"],
        "--set", "python_packages=tabulate")
    check_every_start_was_confined(runner, "kernel-env --reset")
    forget_records(runner)
    assert runner.run(f"test ! -e {SITE}/zz_e2e_recorder.pth").ok        # gone with the old environment


def test_an_authorized_key_a_kernel_writes_gives_no_login(stack):
    runner = stack["runner"]
    key = paramiko.RSAKey.generate(2048)
    public = f"{key.get_name()} {key.get_base64()} e2e-attacker"
    wrote = in_a_kernel(stack, (
        "import os\n"
        "os.makedirs(os.path.expanduser('~/.ssh'), mode=0o700, exist_ok=True)\n"
        f"open(os.path.expanduser('~/.ssh/authorized_keys'), 'a').write({public!r} + '\\n')\n"
        "os.chmod(os.path.expanduser('~/.ssh/authorized_keys'), 0o600)\n"
        "print('written')"))
    assert "written" in wrote
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        with pytest.raises(paramiko.AuthenticationException):
            client.connect(stack["host"].address, port=stack["host"].port, username="jupyter", pkey=key,
                           look_for_keys=False, allow_agent=False, timeout=20, banner_timeout=20)
            _, out, _ = client.exec_command("id")
            print(f"logged in as the notebook user: {out.read().decode().strip()}")
    finally:
        client.close()
    assert runner.run("getent passwd jupyter").stdout.strip().endswith(":/usr/sbin/nologin")
    denied = runner.run("sshd -T -C user=jupyter,host=localhost,addr=127.0.0.1 | grep -i '^denyusers'")
    assert denied.stdout.split()[1:] == ["jupyter"], denied.stdout


def test_terminals_and_a_kernels_shell_commands_still_get_a_shell(stack):
    session = session_for(stack)
    r = session.api("POST", "/api/terminals")
    assert r.status_code == 200, r.text
    name = r.json()["name"]
    try:
        ws = session.websocket(f"/terminals/websocket/{name}", timeout=30)
        ws.send(json.dumps(["stdin", 'echo "shell=$0 SHELL=$SHELL done-$((6*7))"\r']))
        seen = ""
        deadline = time.monotonic() + 30
        while "done-42" not in seen and time.monotonic() < deadline:
            message = json.loads(ws.recv())
            if message[0] == "stdout":
                seen += message[1]
        ws.close()
        assert "shell=/bin/bash SHELL=/bin/bash done-42" in seen, seen
    finally:
        session.api("DELETE", f"/api/terminals/{name}")
    assert "kernel-shell-42" in in_a_kernel(stack, "!echo kernel-shell-$((6*7))")
