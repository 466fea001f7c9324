"""`fab deploy` on fresh sandbox hosts, then `invoke verify`: the product, end to end."""

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from e2e_support import BIN, PROJECT, run_tool, secret_file
from support import sockopts

from jupyterfab import deploy, hostlock, sandbox
from jupyterfab.jupyterclient import JupyterSession, percentile
from jupyterfab.runner import open_runner

pytestmark = pytest.mark.e2e
PASSWORD = "e2e-password-42"


def fab(*args, check=True):
    return run_tool("fab", *args, check=check)


@pytest.fixture(scope="module")
def stack(sandbox_factory, tmp_path_factory):
    inv = sandbox_factory(2)
    secret = secret_file(tmp_path_factory.mktemp("secret"), PASSWORD)
    inventory = str(sandbox.workdir_for(PROJECT) / "hosts.yaml")
    first = fab("-H", "sandbox1,sandbox2", "deploy", "--inventory", inventory,
                "--password-file", str(secret))
    return {"inv": inv, "inventory": inventory, "secret": str(secret), "first": first,
            "first_seconds": first.seconds}


def deploy_again(stack, *extra, check=True):
    return fab("-H", "sandbox1,sandbox2", "deploy", "--inventory", stack["inventory"], *extra,
               check=check)


def verify(stack, host):
    return run_tool("invoke", "verify", "--hosts", host, "--inventory", stack["inventory"],
                    "--password-file", stack["secret"], check=False, timeout=300)


def service_start(runner, unit):
    out = runner.run(f"systemctl show -p MainPID -p ActiveEnterTimestampMonotonic {unit}").stdout
    return dict(line.split("=", 1) for line in out.split())


def test_first_deploy_changes_both_hosts_and_verify_is_green(stack):
    out = stack["first"].stdout
    assert "sandbox1  ok, " in out and "sandbox2  ok, " in out and "FAILED" not in out
    # progress as it happens, a line per changed state and host
    assert re.search(r"sandbox1: jupyter_env \(\S+\) changed in [\d.]+ s", stack["first"].stderr)
    assert re.search(r"sandbox2: nginx_site \(file.managed\) changed in", stack["first"].stderr)
    for name in ("sandbox1", "sandbox2"):
        v = verify(stack, name)
        assert v.returncode == 0, v.stdout + v.stderr
        assert "22 passed" in v.stdout
        # every skip is named with its reason (pytest's -rs lines: "SKIPPED [n] file:line: why")
        skipped = sum(int(n) for n in re.findall(r"(\d+) skipped", v.stdout))
        named = sum(int(n) for n in re.findall(r"^SKIPPED \[(\d+)\] \S+: .+$", v.stdout, re.M))
        assert named == skipped, v.stdout


def test_second_deploy_changes_nothing_and_restarts_nothing(stack):
    host = stack["inv"].hosts["sandbox1"]
    runner = open_runner(host)
    before = {u: service_start(runner, u) for u in ("jupyter", "nginx")}
    started = time.monotonic()
    again = deploy_again(stack)
    seconds = time.monotonic() - started
    assert again.stdout.count("ok, no changes") == 2, again.stdout
    assert "2 hosts: 2 ok, 0 failed; 0 states changed" in again.stdout
    # quiet by default: the table, nothing else (fab deploy -v adds every state in full)
    assert len((again.stdout + again.stderr).strip().splitlines()) <= 8, again.stdout + again.stderr
    after = {u: service_start(runner, u) for u in ("jupyter", "nginx")}
    assert after == before
    assert seconds < stack["first_seconds"] / 5


def processes_of(host, command: bytes) -> list[int]:
    """PIDs of the sandbox host's processes whose command line has ``command``: they are
    this machine's processes too, in the host's network namespace."""
    netns = os.stat(f"/run/netns/{sandbox.NETNS_PREFIX}{host.name}")
    found = []
    for proc in Path("/proc").iterdir():
        try:
            ns, cmdline = os.stat(proc / "ns/net"), (proc / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if (ns.st_dev, ns.st_ino) == (netns.st_dev, netns.st_ino) and command in cmdline:
            found.append(int(proc.name))
    return found


def websocket_nodelay(host) -> dict[str, int]:
    """TCP_NODELAY on every hop of one kernel WebSocket through NGINX, read from the
    sockets themselves (the sandbox's processes run on this kernel): NGINX's end
    towards us, NGINX's end towards Jupyter, and Jupyter's end."""
    on_host = sockopts.connections
    session = JupyterSession(host.address, "jupyter.example.com", "http://jupyter.example.com")
    assert session.login(PASSWORD)
    kernel = session.api("POST", "/api/kernels", {"name": "python3"}).json()["id"]
    ws = session.kernel_channels(kernel, 30)
    try:
        ours = ws.sock.getsockname()[1]
        [jupyter] = processes_of(host, b"bin/jupyter-lab\0")
        jupyter_ends = {remote: v for local, remote, v in on_host(jupyter, 8888) if local == 8888}
        to_us, upstream = [], {}
        for worker in processes_of(host, b"nginx: worker process"):
            to_us = [v for local, remote, v in on_host(worker, 80) if remote == ours]
            if to_us:       # this worker proxies our WebSocket: its ends towards Jupyter
                upstream = {local: v for local, remote, v in on_host(worker, 8888)
                            if remote == 8888 and local in jupyter_ends}
                break
        assert len(to_us) == 1 and len(upstream) == 1, (to_us, upstream, jupyter_ends)
        [(link, nginx_end)] = upstream.items()
        return {"nginx, client side": to_us[0], "nginx, upstream side": nginx_end,
                "jupyter": jupyter_ends[link]}
    finally:
        ws.close()
        session.api("DELETE", f"/api/kernels/{kernel}")


def test_cells_run_at_network_speed_through_nginx_and_nodelay_false_turns_that_off(stack):
    """jupyterfab_nodelay, installed and enabled by the deploy: Jupyter's end of a kernel
    WebSocket has TCP_NODELAY (NGINX's ends have it already, without any setting), and a
    trivial cell's round trip through NGINX stays far below Nagle's ~40 ms (a generous
    bound, not a timing test). `nodelay: false` takes it off Jupyter's end again. Both
    round trips are printed."""
    host = stack["inv"].hosts["sandbox2"]
    runner = open_runner(host)
    log = runner.run("journalctl -u jupyter -o cat | grep 'jupyterfab_nodelay: TCP_NODELAY on'").stdout
    assert "KernelWebsocketHandler" in log and "TermSocket" in log and "SubscribeWebsocket" in log
    assert websocket_nodelay(host) == {"nginx, client side": 1, "nginx, upstream side": 1, "jupyter": 1}

    def round_trips_ms():
        session = JupyterSession(host.address, "jupyter.example.com", "http://jupyter.example.com")
        assert session.login(PASSWORD)
        times = session.cell_round_trips(200)
        return percentile(times, 50) * 1000, percentile(times, 99) * 1000

    on = round_trips_ms()
    fab("-H", "sandbox2", "deploy", "--inventory", stack["inventory"], "--set", "nodelay=false")
    try:
        config = runner.run(f"cat {deploy.CONFIG_FILE}").stdout
        assert 'jpserver_extensions.update({"jupyterfab_nodelay": False})' in config
        assert websocket_nodelay(host) == {"nginx, client side": 1, "nginx, upstream side": 1,
                                           "jupyter": 0}
        off = round_trips_ms()
    finally:
        fab("-H", "sandbox2", "deploy", "--inventory", stack["inventory"])
    print(f"cell round trip through NGINX (p50 / p99): nodelay on {on[0]:.1f} / {on[1]:.1f} ms, "
          f"off {off[0]:.1f} / {off[1]:.1f} ms")
    assert on[0] < 20, (on, off)


def test_dry_run_shows_a_diff_and_changes_nothing(stack):
    host = stack["inv"].hosts["sandbox1"]
    runner = open_runner(host)
    site = "/etc/nginx/sites-enabled/jupyter.conf"
    before = runner.run(f"sha256sum {site}").stdout
    out = deploy_again(stack, "--dry-run", "--set", "client_max_body_size=300M").stdout
    # a diff line, however the report and the site indent it
    assert re.search(r"^\s*-\s+client_max_body_size 100M;$", out, re.M), out
    assert re.search(r"^\s*\+\s+client_max_body_size 300M;$", out, re.M), out
    assert "would change" in out
    assert runner.run(f"sha256sum {site}").stdout == before


def test_notebooks_are_byte_identical_after_a_redeploy_that_restarts_jupyter(stack):
    host = stack["inv"].hosts["sandbox1"]
    runner = open_runner(host)
    nb = "/home/jupyter/notebooks/analysis.ipynb"
    content = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n\x00binary\xff'
    runner.put(content, nb)
    runner.run(f"chown jupyter: {nb}; touch -d '2020-01-02 03:04:05' {nb}")
    before = runner.run(f"stat -c '%s %Y %U %a' {nb}; sha256sum {nb}").stdout
    pid_before = service_start(runner, "jupyter")["MainPID"]
    try:
        out = deploy_again(stack, "--set", "jupyter_port=8899").stdout   # config changes: restart
        assert service_start(runner, "jupyter")["MainPID"] != pid_before, out
        assert runner.run(f"stat -c '%s %Y %U %a' {nb}; sha256sum {nb}").stdout == before
        assert hashlib.sha256(content).hexdigest() in before
    finally:
        deploy_again(stack)   # back to the inventory's port, whatever happened above


def test_after_kill_9_systemd_brings_jupyter_back_within_seconds(stack):
    host = stack["inv"].hosts["sandbox2"]
    runner = open_runner(host)
    pid = service_start(runner, "jupyter")["MainPID"]
    runner.run(f"kill -9 {pid}")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = service_start(runner, "jupyter")["MainPID"]
        if now not in ("0", pid) and runner.run("systemctl is-active jupyter").stdout.strip() == "active":
            break
        time.sleep(0.25)
    else:
        pytest.fail("jupyter did not come back within 15 s of kill -9")
    session = JupyterSession(host.address, "jupyter.example.com", "http://jupyter.example.com")
    deadline = time.monotonic() + 20
    while True:   # listening again takes a moment after the process is back
        try:
            if session.login(PASSWORD):
                break
        except (OSError, requests.RequestException):
            pass
        assert time.monotonic() < deadline, "jupyter did not serve logins again"
        time.sleep(0.5)


def test_after_a_reboot_everything_comes_back_and_verify_is_green(stack):
    sandbox.reboot(PROJECT, "sandbox2")
    deadline = time.monotonic() + 30
    while True:
        v = verify(stack, "sandbox2")
        if v.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert v.returncode == 0, v.stdout + v.stderr


def test_a_broken_nginx_template_fails_at_that_state_and_the_site_keeps_serving(stack, tmp_path):
    files = tmp_path / "files"
    shutil.copytree(PROJECT / "files", files)
    site = files / "nginx/jupyter.conf.j2"
    site.write_text(site.read_text().replace("proxy_buffering off;", "proxy_buffering sometimes;"))
    host = stack["inv"].hosts["sandbox1"]
    runner = open_runner(host)
    live = "/etc/nginx/sites-enabled/jupyter.conf"
    before = runner.run(f"sha256sum {live}").stdout
    from jupyterfab import inventory, passwords
    [entry] = inventory.load(stack["inventory"]).select(["sandbox1"])
    report = deploy.deploy_host(entry, deploy.Options(files_dir=files, password=passwords.Secret(PASSWORD)))
    assert not report.ok
    by_id = {r.state_id: r for r in report.results}
    assert by_id["nginx_site"].ok is False
    assert 'invalid value "sometimes"' in by_id["nginx_site"].stderr
    assert by_id["nginx_service"].ok is False and "requisite failed" in by_id["nginx_service"].comment
    assert runner.run(f"sha256sum {live}").stdout == before
    assert runner.run("nginx -t").rc == 0
    session = JupyterSession(host.address, "jupyter.example.com", "http://jupyter.example.com")
    assert session.get("/login").status_code == 200
    # the refused site never went live, so NGINX owes no reload: the fixed redeploy,
    # and the one after it, change nothing
    assert runner.run("test -e /var/lib/jupyterfab/pending/nginx").rc == 1
    for _ in range(2):
        again = deploy_again(stack)
        assert again.stdout.count("ok, no changes") == 2, again.stdout + again.stderr


def test_a_broken_inventory_is_refused_before_any_connection(stack, tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    connections = []

    def watch():
        end = time.monotonic() + 5
        while time.monotonic() < end:
            try:
                connections.append(listener.accept())
            except OSError:
                pass

    watcher = threading.Thread(target=watch)
    watcher.start()
    bad = tmp_path / "hosts.yaml"
    bad.write_text(f"hosts:\n  trap:\n    address: 127.0.0.1\n    port: {port}\n"
                   "    vars:\n      server_nmae: jupyter.example.com\n")
    proc = fab("-H", "trap", "deploy", "--inventory", str(bad), check=False)
    watcher.join()
    listener.close()
    assert proc.returncode != 0
    assert f"{bad}:6: hosts.trap.vars.server_nmae: unknown variable (did you mean 'server_name'?)" \
        in proc.stderr
    assert connections == []


# Every file's path, owner, mode, size and mtime under /etc and /home (and the
# notebook-user markers): what a refused deploy must leave exactly as it was.
TREE_LISTING = ("find /etc /home /var/lib/jupyterfab -xdev -printf '%p %u:%g %m %s %T@\\n' "
                "2>/dev/null | sort | sha256sum")


def test_an_existing_account_jupyterfab_did_not_create_is_refused_with_the_host_unchanged(stack):
    """SSH works, the inventory is valid, but the host is wrong for it: the notebook user
    named is someone's own account. The deploy's probe sees it; nothing changes."""
    runner = open_runner(stack["inv"].hosts["sandbox1"])
    try:
        runner.run("id alice >/dev/null 2>&1 || useradd --create-home --shell /bin/bash alice")
        before = runner.run(TREE_LISTING).stdout
        proc = fab("-H", "sandbox1", "deploy", "--inventory", stack["inventory"],
                   "--set", "jupyter_user=alice", "--set", "notebook_dir=/home/alice/notebooks",
                   check=False)
        after = runner.run(TREE_LISTING).stdout
        account = runner.run("getent passwd alice").stdout
    finally:
        runner.close()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert ("sandbox1: FAILED: --set jupyter_user: the account 'alice'" in proc.stdout
            and "jupyterfab did not create it" in proc.stdout), proc.stdout
    assert before == after
    assert account.endswith(":/home/alice:/bin/bash\n")     # no usermod (the tree: no chown)


def test_an_unknown_host_key_is_refused_not_trusted(stack, tmp_path):
    unpinned = tmp_path / "hosts.yaml"
    text = Path(stack["inventory"]).read_text()
    unpinned.write_text("\n".join(s for s in text.splitlines() if "known_hosts:" not in s) + "\n")
    proc = run_tool("fab", "-H", "sandbox1", "deploy", "--inventory", str(unpinned),
                    env={"HOME": str(tmp_path)}, check=False, timeout=120)   # empty ~/.ssh
    assert proc.returncode != 0
    assert "host key of 198.18.0.11" in proc.stdout and "is not in ~/.ssh/known_hosts" in proc.stdout


# --- day-2 tasks --------------------------------------------------------------------

def day2(stack, *args, check=True):
    return fab("-H", "sandbox1", *args, "--inventory", stack["inventory"], check=check)


def test_status_shows_state_uptime_version_url_and_log(stack):
    out = day2(stack, "status", "--lines", "3").stdout
    assert "== sandbox1: ok" in out
    assert "service:  jupyter active (running)" in out
    assert re.search(r"uptime:   \d\d:\d\d:\d\d \(since ", out)
    assert re.search(r"jupyter:  JupyterLab 4\.\d+\.\d+\w*, Jupyter Server 2\.\d+\.\d+", out)
    assert re.search(r"env:      /opt/jupyterfab/venv( -> /opt/jupyterfab/envs/\S+)?\n", out)
    assert "url:      http://jupyter.example.com" in out
    log = out.split("log:\n", 1)[1].strip().splitlines()
    assert len(log) == 3 and all("sandbox1" in line for line in log)


def test_logs_prints_the_asked_number_of_journal_lines(stack):
    out = day2(stack, "logs", "--lines", "4").stdout
    lines = out.split("== sandbox1: ok\n", 1)[1].strip().splitlines()
    assert len(lines) == 4 and all(" sandbox1 " in line for line in lines)


def test_logs_follow_streams_every_named_host_with_its_name_until_ctrl_c(stack):
    plain = day2(stack, "logs", "--lines", "2").stdout.split("== sandbox1: ok\n", 1)[1].strip()
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} sandbox\d ")
    assert stamp.match(plain), plain
    follower = subprocess.Popen(
        [str(BIN / "fab"), "-H", "sandbox1,sandbox2", "logs", "--follow", "--lines", "2",
         "--inventory", stack["inventory"]], cwd=PROJECT, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"})
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(follower.stdout), daemon=True)
    reader.start()
    try:
        wait_for(lambda: {line.split(":")[0] for line in seen} == {"sandbox1", "sandbox2"}, 30)
        before = len(seen)
        fab("-H", "sandbox2", "restart", "--inventory", stack["inventory"])
        # lines written after the follow began come through too, from the host they are on
        wait_for(lambda: any(line.startswith("sandbox2: ") for line in seen[before:]), 30)
    finally:
        follower.send_signal(signal.SIGINT)     # Ctrl-C
        rc = follower.wait(timeout=15)
        reader.join(5)
    errors = follower.stderr.read()
    assert rc == 0 and "Traceback" not in errors, errors
    assert all(re.match(r"sandbox[12]: ", line) for line in seen), seen
    assert all(stamp.match(line.split(": ", 1)[1]) for line in seen), seen
    # Ctrl-C ended the followers on the hosts too (their SSH sessions hung them up)
    for name in ("sandbox1", "sandbox2"):
        runner = open_runner(stack["inv"].hosts[name])
        try:
            wait_for(lambda r=runner: not r.run("pgrep -x journalctl").stdout.strip(), 10)
        finally:
            runner.close()


def wait_for(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s"
        time.sleep(0.2)


def test_restart_returns_once_jupyter_serves_again(stack):
    host = stack["inv"].hosts["sandbox1"]
    runner = open_runner(host)
    pid = service_start(runner, "jupyter")["MainPID"]
    assert "sandbox1: ok: restart: jupyter is active" in day2(stack, "restart").stdout
    assert service_start(runner, "jupyter")["MainPID"] != pid
    session = JupyterSession(host.address, "jupyter.example.com", "http://jupyter.example.com")
    assert session.login(PASSWORD)     # no waiting: restart returned only once it answers


def test_stop_then_start(stack):
    host = stack["inv"].hosts["sandbox1"]
    session = JupyterSession(host.address, "jupyter.example.com", "http://jupyter.example.com")
    assert "jupyter is inactive" in day2(stack, "stop").stdout
    assert session.get("/login").status_code == 502      # NGINX up, Jupyter down
    assert "jupyter is active" in day2(stack, "start").stdout
    assert session.login(PASSWORD)


def test_rotate_password_changes_only_the_config_and_restarts_once(stack, tmp_path):
    host = stack["inv"].hosts["sandbox1"]
    runner = open_runner(host)
    files = ("/etc/jupyterfab/jupyter_server_config.py", "/etc/systemd/system/jupyter.service",
             "/etc/nginx/sites-enabled/jupyter.conf")
    before = {f: runner.run(f"sha256sum {f}").stdout for f in files}
    nginx_before = service_start(runner, "nginx")
    jupyter_before = service_start(runner, "jupyter")
    new_password = "rotated-password-7"
    secret = secret_file(tmp_path, new_password, "new")

    try:
        proc = day2(stack, "rotate-password", "--password-file", str(secret))
        assert "sandbox1: ok: new password hash" in proc.stdout
        assert new_password not in proc.stdout + proc.stderr
        after = {f: runner.run(f"sha256sum {f}").stdout for f in files}
        assert after[files[0]] != before[files[0]]
        assert [after[f] for f in files[1:]] == [before[f] for f in files[1:]]
        assert runner.run(f"stat -c '%U %G %a' {files[0]}").stdout.strip() == "root jupyter 640"
        assert service_start(runner, "nginx") == nginx_before
        assert service_start(runner, "jupyter")["MainPID"] != jupyter_before["MainPID"]
        assert new_password not in runner.run("cat /etc/jupyterfab/jupyter_server_config.py").stdout

        old = JupyterSession(host.address, "jupyter.example.com", "http://jupyter.example.com")
        assert not old.login(PASSWORD)
        new = JupyterSession(host.address, "jupyter.example.com", "http://jupyter.example.com")
        assert new.login(new_password)

        # a deploy without a password keeps the rotated hash: nothing to change (the
        # config is not rewritten, Jupyter not restarted, NGINX not reloaded)
        pid = service_start(runner, "jupyter")["MainPID"]
        again = deploy_again(stack)
        assert "sandbox1  ok, no changes" in again.stdout, again.stdout + again.stderr
        assert runner.run(f"sha256sum {files[0]}").stdout == after[files[0]]
        assert service_start(runner, "jupyter")["MainPID"] == pid
        # the same password again changes nothing, not even a restart
        assert "already this one" in day2(stack, "rotate-password", "--password-file", str(secret)).stdout
        assert service_start(runner, "jupyter")["MainPID"] == pid
    finally:   # back to the password the other tests log in with
        day2(stack, "rotate-password", "--password-file", stack["secret"])


def test_a_fleet_with_one_unreachable_host_finishes_the_others_and_names_it(stack, tmp_path):
    # 198.18.0.99 is on the sandbox bridge with nothing behind it: traffic stays here.
    fleet = tmp_path / "hosts.yaml"
    fleet.write_text(Path(stack["inventory"]).read_text()
                     + "  ghost:\n    address: 198.18.0.99\n    groups: [sandbox]\n")
    proc = fab("-H", "sandbox1,ghost,sandbox2", "deploy", "--inventory", str(fleet), check=False)
    assert proc.returncode == 1
    assert "sandbox1  ok, no changes" in proc.stdout and "sandbox2  ok, no changes" in proc.stdout
    assert re.search(r"ghost: FAILED: unreachable: ghost: cannot connect", proc.stdout)
    assert "deploy failed on: ghost" in proc.stderr


def test_backup_then_restore_brings_back_byte_identical_notebooks(stack, tmp_path):
    host = stack["inv"].hosts["sandbox1"]
    runner = open_runner(host)
    nbdir = "/home/jupyter/notebooks"
    files = {f"{nbdir}/a.ipynb": b'{"cells": []}\n', f"{nbdir}/sub dir/b.ipynb": bytes(range(256)) * 64}
    runner.run(f"runuser -u jupyter -- mkdir -p '{nbdir}/sub dir'")
    for path, content in files.items():
        runner.put(content, path)
        runner.run(f"chown jupyter: '{path}'")
    digests = runner.run(f"cd {nbdir} && find . -type f -exec sha256sum {{}} + | sort").stdout

    out = day2(stack, "backup", "--dest", str(tmp_path)).stdout
    [archive] = tmp_path.glob("sandbox1-notebooks-*.tar.gz")
    assert str(archive) in out
    recorded = (tmp_path / (archive.name + ".sha256")).read_text().split()[0]
    assert recorded == hashlib.sha256(archive.read_bytes()).hexdigest()

    runner.run(f"rm -f {nbdir}/a.ipynb; echo changed > '{nbdir}/sub dir/b.ipynb'")
    changed = runner.run(f"cd {nbdir} && find . -type f -exec sha256sum {{}} + | sort").stdout
    assert changed != digests
    # --dry-run lists what it would overwrite (the user's newer b.ipynb) and changes nothing
    dry = day2(stack, "restore", "--archive", str(archive), "--dry-run").stdout
    # (other tests of this module may have left notebooks of their own in the archive)
    listed = [line.strip() for line in dry.splitlines() if line.startswith("  ./")]
    assert f"overwriting {len(listed)} file(s)" in dry, dry
    assert "./sub dir/b.ipynb" in listed and "./a.ipynb" not in listed, dry
    assert runner.run(f"cd {nbdir} && find . -type f -exec sha256sum {{}} + | sort").stdout == changed
    out = day2(stack, "restore", "--archive", str(archive)).stdout
    snapshot = re.search(r"saved first in (/var/backups/jupyterfab/notebooks-before-restore-\S+\.tar\.gz)",
                         out)
    assert "restored" in out and snapshot, out
    # the newer work it overwrote is kept on the host, byte for byte
    kept = runner.run(f"tar -xzOf {snapshot.group(1)} './sub dir/b.ipynb'").stdout
    assert kept == "changed\n"
    assert runner.run(f"cd {nbdir} && find . -type f -exec sha256sum {{}} + | sort").stdout == digests
    assert runner.run(f"stat -c %U {nbdir}/a.ipynb").stdout.strip() == "jupyter"

    # a tampered archive is refused before anything reaches the host
    archive.write_bytes(archive.read_bytes() + b"x")
    proc = day2(stack, "restore", "--archive", str(archive), check=False)
    assert proc.returncode == 1 and "does not match" in proc.stdout


def test_a_group_deploy_can_report_json(stack):
    import json
    proc = fab("deploy", "--group", "sandbox", "--inventory", stack["inventory"], "--json")
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["dry_run"] is False
    assert sorted(h["host"] for h in report["hosts"]) == ["sandbox1", "sandbox2"]
    for h in report["hosts"]:
        assert h["changed"] == 0 and h["error"] == ""
        assert {s["id"] for s in h["states"]} >= {"jupyter_env", "nginx_site", "jupyter_service"}
        assert all(s["ok"] is True and not s["changed"] for s in h["states"])


def test_a_changing_task_on_a_locked_host_is_refused_in_one_line_and_status_still_answers(stack):
    host = stack["inv"].hosts["sandbox2"]
    runner = open_runner(host)
    try:
        with hostlock.held(runner, "deploy", wait=0):
            proc = run_tool("fab", "-H", "sandbox2", "restart", "--inventory", stack["inventory"],
                            env={"JUPYTERFAB_LOCK_WAIT": "1"}, check=False)
            assert proc.returncode == 1
            line = f"sandbox2: FAILED: host busy: deploy from {hostlock.controller()} since "
            assert line in proc.stdout, proc.stdout + proc.stderr
            assert "Traceback" not in proc.stdout + proc.stderr
            status = fab("-H", "sandbox2", "status", "--inventory", stack["inventory"])
            assert "== sandbox2: ok" in status.stdout
    finally:
        runner.close()


def test_two_deploys_and_a_rotation_at_once_are_serialised_and_the_rotation_holds(stack, tmp_path):
    new_password = "concurrent-password-9"
    secret = secret_file(tmp_path, new_password)
    inventory = stack["inventory"]
    runs = {
        "deploy-a": ("fab", "-H", "sandbox1", "deploy", "--inventory", inventory,
                     "--set", "client_max_body_size=200M"),
        "rotate": ("fab", "-H", "sandbox1", "rotate-password", "--inventory", inventory,
                   "--password-file", str(secret)),
        "deploy-b": ("fab", "-H", "sandbox1", "deploy", "--inventory", inventory),
    }
    done = {}
    threads = [threading.Thread(target=lambda k=k, a=a: done.__setitem__(k, run_tool(*a, check=False)))
               for k, a in runs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, proc in done.items():
        said = proc.stdout + proc.stderr
        assert "Traceback" not in said, f"{name}:\n{said}"
        assert proc.returncode == 0 or "host busy: " in said, f"{name}:\n{said}"
    assert done["rotate"].returncode == 0, done["rotate"].stdout
    # the password-less deploys kept the rotated hash: the new password logs in
    v = run_tool("invoke", "verify", "--hosts", "sandbox1", "--inventory", inventory,
                 "--password-file", str(secret), check=False, timeout=300)
    assert v.returncode == 0, v.stdout + v.stderr
    day2(stack, "rotate-password", "--password-file", stack["secret"])   # back, for other tests
    deploy_again(stack)


def test_a_full_etc_nginx_refuses_the_deploy_up_front_and_a_rerun_after_freeing_space_converges(stack):
    host = stack["inv"].hosts["sandbox2"]
    runner = open_runner(host)
    live = ("sha256sum /etc/nginx/sites-enabled/jupyter.conf /etc/jupyterfab/jupyter_server_config.py "
            "/etc/systemd/system/jupyter.service; readlink /opt/jupyterfab/venv")
    before = runner.run(live).stdout
    # /etc/nginx on a 4 MB filesystem of its own, filled up (freeing it leaves ~3.9 MB)
    full = runner.run("set -e; cp -a /etc/nginx /run/nginx.copy; mount -t tmpfs -o size=4m tmpfs /etc/nginx; "
                      "cp -a /run/nginx.copy/. /etc/nginx/; rm -rf /run/nginx.copy; "
                      "head -c 8M /dev/zero > /etc/nginx/.filler || true")
    assert full.ok, full.stderr
    try:
        args = ("-H", "sandbox2", "deploy", "--inventory", stack["inventory"],
                "--set", "client_max_body_size=300M")
        proc = fab(*args, check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
        assert re.search(r"sandbox2: FAILED: sandbox2: not enough disk space: /etc/nginx has 0\.\d MB free, "
                         r"needs 1\.0 MB; nothing was changed", proc.stdout), proc.stdout
        assert runner.run(live).stdout == before
        runner.run("rm -f /etc/nginx/.filler")
        again = fab(*args)
        assert "sandbox2  ok, " in again.stdout
        assert "client_max_body_size 300M;" in runner.run("cat /etc/nginx/sites-enabled/jupyter.conf").stdout
    finally:
        runner.run("rm -f /etc/nginx/.filler; cp -a /etc/nginx /run/nginx.copy && umount /etc/nginx "
                   "&& cp -a /run/nginx.copy/. /etc/nginx/ && rm -rf /run/nginx.copy")
    fab("-H", "sandbox2", "deploy", "--inventory", stack["inventory"])
    v = verify(stack, "sandbox2")
    assert v.returncode == 0, v.stdout + v.stderr


def test_a_non_root_ssh_user_with_passwordless_sudo_gets_every_task(stack, tmp_path):
    """docs/first-server.md: "SSH in as root, or as a user with passwordless sudo". The user `deploy` on
    sandbox2: a redeploy, verify, every day-2 task and upgrade, all through `sudo -n`."""
    host = stack["inv"].hosts["sandbox2"]
    root = open_runner(host)
    made = root.run("id deploy >/dev/null 2>&1 || useradd -m -s /bin/sh deploy; "
                    "install -d -o deploy -g deploy -m 700 /home/deploy/.ssh && "
                    "install -o deploy -g deploy -m 600 /root/.ssh/authorized_keys /home/deploy/.ssh/ && "
                    "echo 'deploy ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/deploy && "
                    "chmod 440 /etc/sudoers.d/deploy")
    assert made.ok, made.stderr
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(Path(stack["inventory"]).read_text().replace("  user: root\n", "  user: deploy\n"))
    as_deploy = ["--inventory", str(inventory)]

    def task(*args):
        proc = fab("-H", "sandbox2", *args, *as_deploy, check=False)
        assert proc.returncode == 0, f"fab {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    assert "sandbox2  ok, no changes" in task("deploy")
    checked = run_tool("invoke", "verify", "--hosts", "sandbox2", *as_deploy, "--password-file",
                       stack["secret"], check=False, timeout=300)
    as_root = verify(stack, "sandbox2")
    counts = re.compile(r"\d+ passed(?:, \d+ skipped)?")      # the same checks, however long they took
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert counts.findall(checked.stdout) == counts.findall(as_root.stdout) != [], checked.stdout
    assert "service:  jupyter active (running)" in task("status")
    for action in ("restart", "stop", "start"):
        assert "sandbox2: ok: " in task(action)
    assert "== sandbox2: ok" in task("logs", "--lines", "5")   # the lines, as a block
    assert "already this one" in task("rotate-password", "--password-file", stack["secret"])
    saved = task("backup", "--dest", str(tmp_path / "backups"))
    [archive] = (tmp_path / "backups").glob("sandbox2-notebooks-*.tar.gz")
    assert archive.name in saved
    assert "restored" in task("restore", "--archive", str(archive))
    version = root.run("/opt/jupyterfab/venv/bin/python -c 'import importlib.metadata as m; "
                       "print(m.version(\"jupyterlab\"))'").stdout.strip()
    assert "nothing to do (no restart)" in task("upgrade", "--jupyterlab", version)
    assert made.ok and root.run("systemctl is-active jupyter").stdout.strip() == "active"
