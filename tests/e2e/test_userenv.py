"""The notebook user's own Python on a sandbox host: `%pip install` from a PEP 503 index
served on the sandbox bridge (the pip_index_url a user behind a mirror sets) into the
user's kernel environment, which deploys keep; the service's memory limit kills a
runaway kernel and nothing else; idle kernels are culled, busy ones are not; `fab
status` and `fab kernel-env --reset`. One host, one first deploy for the whole module.
(Surviving `fab upgrade` and its rollback: tests/e2e/test_upgrade.py.)"""

import json
import re
import time

import pytest
import websocket
from e2e_support import PROJECT, fab_logged, make_wheel, pep503_tree, secret_file, serve_directory

from jupyterfab.dev import sandbox
from jupyterfab.engine.runner import open_runner
from jupyterfab.stack.envs import wheelhouse
from jupyterfab.verify.jupyterclient import JupyterError, JupyterSession

pytestmark = pytest.mark.e2e
PASSWORD = "e2e-userenv-password"
KERNEL_ENV = "/home/jupyter/.local/share/jupyterfab/kernel-env"
HELLO = "jupyterfab-e2e-hello"          # only the index has it
MEMORY_MAX = "400M"
CULL_SECONDS = 12


def fab(*args, check=True):
    return fab_logged(*args, check=check)


@pytest.fixture(scope="module")
def stack(sandbox_factory, tmp_path_factory):
    inv = sandbox_factory(1)
    work = tmp_path_factory.mktemp("userenv")
    hello = make_wheel(work, HELLO, {"jupyterfab_e2e_hello/__init__.py": b"GREETING = 'hello from the index'\n"})
    index = work / "index"
    pep503_tree(index, [hello])
    bridge = str(sandbox.Network.parse(sandbox.DEFAULT_SUBNET).gateway)
    url, stop = serve_directory(index, bridge)
    text = (sandbox.workdir_for(PROJECT) / "hosts.yaml").read_text()
    inventory = work / "hosts.yaml"
    inventory.write_text(text.replace("  vars:\n", (
        "  vars:\n"
        f"    pip_index_url: {url}/simple/\n"
        "    python_packages: [tabulate]\n"
        f"    memory_max: {MEMORY_MAX}\n"
        f"    cull_idle_timeout: {CULL_SECONDS}\n"), 1))
    secret = secret_file(work, PASSWORD)
    first = fab("-H", "sandbox1", "deploy", "--inventory", str(inventory), "--password-file", str(secret))
    # The index serves the deploy's wheelhouse too, as a mirror of PyPI would.
    pep503_tree(index, [hello, *{w.name: w for w in wheelhouse.CACHE.glob("*/*.whl")}.values()])
    host = inv.hosts["sandbox1"]
    yield {"host": host, "runner": open_runner(host), "inventory": str(inventory), "first": first,
           "index": url}
    stop()


def session_for(stack) -> JupyterSession:
    session = JupyterSession(stack["host"].address, "jupyter.example.com", "http://jupyter.example.com",
                             timeout=30)
    assert session.login(PASSWORD)
    return session


def deploy(stack, *args, check=True):
    return fab("-H", "sandbox1", "deploy", "--inventory", stack["inventory"], *args, check=check)


def owners(runner, *paths) -> set[str]:
    return set(runner.run("stat -c %U " + " ".join(paths)).stdout.split())


def test_the_first_deploy_makes_the_users_environment_and_kernel(stack):
    runner = stack["runner"]
    made = re.search(r"sandbox1: kernel_env \(pip\.installed\) changed in ([\d.]+) s", stack["first"].stderr)
    assert made, stack["first"].stderr
    print(f"user environment created in {made.group(1)} s on the first deploy "
          f"(whole first deploy {stack['first'].seconds:.1f} s)")
    assert owners(runner, KERNEL_ENV, f"{KERNEL_ENV}/bin", f"{KERNEL_ENV}/lib/python3.11/site-packages") == {"jupyter"}
    assert runner.run(f"test -x {KERNEL_ENV}/bin/pip && test -x {KERNEL_ENV}/bin/python").ok
    # the server's environment stays root's, and has nothing of the user's
    assert runner.run("find -L /opt/jupyterfab/venv ! -user root | head -3").stdout == ""
    spec = session_for(stack).api("GET", "/api/kernelspecs").json()
    assert spec["default"] == "python3" and list(spec["kernelspecs"]) == ["python3"]
    assert f"{KERNEL_ENV}/bin/python" in spec["kernelspecs"]["python3"]["spec"]["argv"]
    conf = runner.run("cat /opt/jupyterfab/etc/xdg/pip/pip.conf").stdout
    assert f"index-url = {stack['index']}/simple/" in conf and "find-links = /opt/jupyterfab/wheelhouse" in conf


def test_a_second_deploy_changes_nothing(stack):
    pid = stack["runner"].run("systemctl show -p MainPID --value jupyter").stdout
    again = deploy(stack)
    assert "sandbox1  ok, no changes" in again.stdout and "0 states changed" in again.stdout, again.stdout
    assert stack["runner"].run("systemctl show -p MainPID --value jupyter").stdout == pid
    print(f"no-op redeploy: {again.seconds:.2f} s, 0 changes")


def test_pip_install_in_a_notebook_installs_from_the_index_into_the_users_environment(stack):
    session = session_for(stack)
    kernel = session.start_kernel()
    try:
        out = session.execute(kernel, f"%pip install {HELLO}", timeout=180)
        assert f"Successfully installed {HELLO}-1.0" in out["stdout"], out
        got = session.execute(kernel, "import jupyterfab_e2e_hello as h; print(h.GREETING, h.__file__)")
        assert got["stdout"].startswith(f"hello from the index {KERNEL_ENV}/lib/python3.11/site-packages/")
        shell = session.execute(kernel, "!pip --version")["stdout"]      # !pip: the kernel's PATH
        assert f"from {KERNEL_ENV}/lib/python3.11/site-packages/pip" in shell, shell
    finally:
        session.api("DELETE", f"/api/kernels/{kernel}")
    # the server's environment did not get it
    assert "jupyterfab_e2e_hello" not in stack["runner"].run(
        "ls /opt/jupyterfab/venv/lib/python3.11/site-packages").stdout


def test_pip_in_a_terminal_is_the_users_pip(stack):
    session = session_for(stack)
    r = session.api("POST", "/api/terminals")
    assert r.status_code == 200, r.text
    name = r.json()["name"]
    try:
        cookies = "; ".join(f"{k}={v}" for k, v in session.http.cookies.items())
        ws = websocket.create_connection(
            f"ws://{session.address}/terminals/websocket/{name}", timeout=30,
            host=session.server_name, origin=session.origin,
            header=[f"Cookie: {cookies}", f"X-XSRFToken: {session.http.cookies.get('_xsrf', '')}"])
        ws.send(json.dumps(["stdin", "pip --version; pip config list; echo done-$((6*7))\r"]))
        seen = ""
        deadline = time.monotonic() + 30
        while "done-42" not in seen and time.monotonic() < deadline:
            message = json.loads(ws.recv())
            if message[0] == "stdout":
                seen += message[1]
        ws.close()
        assert f"from {KERNEL_ENV}/lib/python3.11/site-packages/pip" in seen, seen
        assert f"global.index-url='{stack['index']}/simple/'" in seen, seen
    finally:
        session.api("DELETE", f"/api/terminals/{name}")


def test_a_deploy_adds_a_missing_seed_and_keeps_what_the_user_installed(stack):
    runner = stack["runner"]
    gone = runner.run(f"runuser -u jupyter -- {KERNEL_ENV}/bin/python -m pip uninstall -y tabulate")
    assert gone.ok, gone.stderr
    out = deploy(stack)
    assert re.search(r"kernel_env \(pip\.installed\) changed", out.stderr), out.stderr
    assert "missing: tabulate" in out.stdout + out.stderr    # its progress line
    assert "sandbox1  ok, 1 changed" in out.stdout
    check = runner.run(f"runuser -u jupyter -- {KERNEL_ENV}/bin/python -c "
                       "'import tabulate, jupyterfab_e2e_hello'")
    assert check.ok, check.stderr
    assert "sandbox1  ok, no changes" in deploy(stack).stdout


def test_the_limits_are_on_the_service_and_kernels_raise_their_oom_score(stack):
    runner = stack["runner"]
    props = dict(line.split("=", 1) for line in runner.run(
        "systemctl show -p MemoryMax -p TasksMax -p OOMPolicy jupyter").stdout.split())
    assert props == {"MemoryMax": str(400 << 20), "TasksMax": "4096", "OOMPolicy": "continue"}
    session = session_for(stack)
    kernel = session.start_kernel()
    try:
        pid = session.execute(kernel, "import os; os.getpid()")["result"]
        assert runner.run(f"cat /proc/{pid}/oom_score_adj").stdout.strip() == "500"
        server = runner.run("systemctl show -p MainPID --value jupyter").stdout.strip()
        # the server's own is lower: the OOM killer takes the kernel first
        assert int(runner.run(f"cat /proc/{server}/oom_score_adj").stdout) < 500
    finally:
        session.api("DELETE", f"/api/kernels/{kernel}")


def kernel_state(session, kernel: str) -> str:
    """The kernel's execution state as the server reports it ("gone" once it is not there)."""
    answer = session.api("GET", f"/api/kernels/{kernel}")
    return answer.json().get("execution_state", "unknown") if answer.status_code == 200 else "gone"


def test_a_cell_over_memory_max_kills_its_kernel_and_nothing_else(stack):
    runner = stack["runner"]
    # The kernel enforces MemoryMax through the service's memory cgroup: v2's memory.max,
    # or on a cgroup v1 machine (this CI's) memory.limit_in_bytes, where systemd applies
    # MemoryMax= as MemoryLimit=.
    limit = runner.run("cat /sys/fs/cgroup/memory/system.slice/jupyter.service/memory.limit_in_bytes "
                       "2>/dev/null || cat /sys/fs/cgroup/system.slice/jupyter.service/memory.max")
    assert limit.stdout.strip() == str(400 << 20), (limit.stdout, limit.stderr)
    session = session_for(stack)
    greedy, other = session.start_kernel(), session.start_kernel()
    # This stack culls kernels idle for CULL_SECONDS; a connected one is kept (cull_connected
    # is off), so `other` keeps its state however long the greedy kernel takes to die.
    holding_other = session.kernel_channels(other)
    server = runner.run("systemctl show -p MainPID --value jupyter").stdout
    try:
        assert session.execute(other, "x = 40 + 2; x")["result"] == "42"
        with pytest.raises(JupyterError, match="died"):
            session.execute(greedy, "block = b'x' * (600 << 20)", timeout=120)
        # the server kept serving (same process), sshd answers, the other kernel kept its state
        assert session.get("/api/status").status_code == 200
        assert runner.run("systemctl show -p MainPID --value jupyter").stdout == server
        assert runner.run("systemctl is-active jupyter").stdout.strip() == "active"
        assert runner.run("true").ok
        assert session.execute(other, "x")["result"] == "42"
        # The killed kernel can be restarted and runs code again. The server's restarter is
        # bringing it back on its own, and a restart sent on top of that can interrupt the
        # kernel being started (its cell then aborted or never answered), so this waits for
        # the restarter to settle first, then restarts as a user would, pressing restart
        # again while the kernel does not answer. Connected meanwhile, as JupyterLab is, so
        # the idle culler (CULL_SECONDS) cannot take the kernel between the tries.
        holding_greedy = session.kernel_channels(greedy)
        settle = time.monotonic() + 60
        while time.monotonic() < settle and kernel_state(session, greedy) in ("busy", "restarting",
                                                                               "starting", "unknown"):
            time.sleep(1)
        answers = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and (not answers or answers[-1] != "42"):
            restart = session.api("POST", f"/api/kernels/{greedy}/restart")
            if restart.status_code != 200:
                answers.append(f"restart answered {restart.status_code}: {restart.text[:100]}")
                time.sleep(3)
                continue
            try:
                answers.append(session.execute(greedy, "6 * 7", timeout=30)["result"])
            except JupyterError as exc:
                answers.append(str(exc))
        holding_greedy.close()
        assert answers and answers[-1] == "42", answers
    finally:
        holding_other.close()
        for kernel in (greedy, other):
            session.api("DELETE", f"/api/kernels/{kernel}")


def test_status_shows_kernels_memory_against_the_limit_and_disk(stack):
    session = session_for(stack)
    kernel = session.start_kernel()
    try:
        session.execute(kernel, "1")
        out = fab("-H", "sandbox1", "status", "--inventory", stack["inventory"]).stdout
    finally:
        session.api("DELETE", f"/api/kernels/{kernel}")
    assert "kernels:  1 running" in out
    assert re.search(r"memory:   [\d.]+ MiB of 400\.0 MiB \(MemoryMax, \d+%\)", out), out
    assert re.search(r"disk:     /home/jupyter: .* free of .*\(\d+%\)", out), out


def test_an_idle_kernel_is_culled_and_a_busy_one_is_not(stack):
    session = session_for(stack)
    idle, busy = session.start_kernel(), session.start_kernel()
    try:
        session.execute(idle, "1")
        session.execute(busy, "import time; time.sleep(300)", wait=False)
        started = time.monotonic()
        while session.api("GET", f"/api/kernels/{idle}").status_code == 200:
            assert time.monotonic() < started + CULL_SECONDS * 4 + 15, "the idle kernel was not culled"
            time.sleep(1)
        waited = time.monotonic() - started
        state = session.api("GET", f"/api/kernels/{busy}")
        assert state.status_code == 200 and state.json()["execution_state"] == "busy"
        print(f"idle kernel culled after about {waited:.0f} s; the busy one still runs")
    finally:
        session.api("DELETE", f"/api/kernels/{busy}")


def test_kernel_env_reset_rebuilds_a_broken_environment_and_keeps_its_list(stack):
    runner = stack["runner"]
    # A Python upgraded under it: the interpreter it points at is gone.
    broke = runner.run(f"runuser -u jupyter -- ln -sfn /usr/bin/python3.0-gone {KERNEL_ENV}/bin/python")
    assert broke.ok
    out = deploy(stack, check=False)
    assert out.returncode == 1
    assert f"the environment {KERNEL_ENV} is broken" in out.stdout
    assert "fab kernel-env --reset rebuilds it" in out.stdout
    refused = fab("-H", "sandbox1", "kernel-env", "--reset", "--inventory", stack["inventory"], check=False)
    assert refused.returncode == 2 and "confirm with --yes" in refused.stderr
    assert runner.run(f"test -L {KERNEL_ENV}/bin/python").ok          # nothing done
    reset = fab("-H", "sandbox1", "kernel-env", "--reset", "--yes", "--reinstall",
                "--inventory", stack["inventory"])
    saved = re.search(r"is in (\S+\.txt)", reset.stdout).group(1)
    assert saved.startswith(f"{KERNEL_ENV}.") and "reinstalled them" in reset.stdout
    listed = runner.run(f"cat {saved}").stdout
    assert re.search(r"^jupyterfab_e2e_hello==1\.0$", listed, re.M), listed   # read from dist-info
    session = session_for(stack)
    assert session.run_code("import jupyterfab_e2e_hello as h, tabulate; h.GREETING") == \
        "'hello from the index'"
    assert owners(runner, KERNEL_ENV, f"{KERNEL_ENV}/bin/python") == {"jupyter"}
    assert "sandbox1  ok, no changes" in deploy(stack).stdout
