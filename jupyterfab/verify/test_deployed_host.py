"""What a deployed host must look like, checked on the live host (testinfra) and
through NGINX from this machine, as a browser would."""

import socket

import pytest

from jupyterfab import initsys


def test_packages_are_installed(host):
    for name in ("nginx", "python3-venv"):
        assert host.package(name).is_installed, name


def test_jupyter_user_exists_and_is_unprivileged(host, v):
    user = host.user(v["jupyter_user"])
    assert user.exists
    assert user.uid != 0 and "sudo" not in user.groups
    assert user.home == v["jupyter_home"]


def test_the_notebook_user_has_no_login_unless_the_inventory_asks(host, v):
    # an authorized_keys written by notebook code must open nothing (jupyterfab/login.py)
    assert host.user(v["jupyter_user"]).shell == v["jupyter_user_shell"]
    if not v["jupyter_user_login"]:
        with host.sudo():
            said = host.run("sshd -T -C user=%s,host=localhost,addr=127.0.0.1", v["jupyter_user"]).stdout
        denied = [name for line in said.splitlines() if line.startswith("denyusers ") for name in line.split()[1:]]
        assert v["jupyter_user"] in denied, f"sshd does not refuse {v['jupyter_user']}"


def test_notebook_dir_belongs_to_the_jupyter_user(host, v):
    with host.sudo():   # under the jupyter user's home: root's (or its) to look into
        d = host.file(v["notebook_dir"])
        assert d.is_directory and d.user == v["jupyter_user"] and d.mode == 0o750


def test_config_holds_the_password_hash_and_only_jupyter_reads_it(host, v):
    with host.sudo():   # root's to read (the SSH user may be a sudoer, not root)
        f = host.file(v["config_file"])
        # root's, readable by Jupyter's group: notebook code cannot rewrite the hash
        assert (f.user, f.group, f.mode) == ("root", v["jupyter_user"], 0o640)
        assert f.contains("^c.PasswordIdentityProvider.hashed_password = \"argon2:")
        assert f.contains("^c.ServerApp.ip = \"127.0.0.1\"")


def test_unit_and_site_files(host, init, v):
    system = initsys.for_init(init)
    unit = host.file(system.unit_path("jupyter"))
    assert unit.mode == 0o644 and unit.user == "root"
    for line in system.restart_policy(v["jupyter_user"]):
        assert unit.contains(line), f"{system.unit_path('jupyter')} has no line {line}"
    site = host.file("/etc/nginx/sites-enabled/jupyter.conf")
    assert site.mode == 0o644 and site.contains("proxy_set_header Upgrade")
    assert not host.file("/etc/nginx/sites-enabled/default").exists


def test_services_are_running_and_enabled(host, init):
    # testinfra asks systemctl on systemd hosts; on Upstart hosts, `status` and the
    # job file (jupyter), else the SysV script and its rc links (NGINX on 14.04)
    for name in ("jupyter", "nginx"):
        service = host.service(name)
        assert service.is_running, name
        assert service.is_enabled, name
    if init == "upstart":
        with host.sudo():
            said = host.run("initctl status jupyter").stdout
        job = initsys.parse_initctl_status((said.splitlines() or [""])[0], "jupyter")
        assert job is not None and job.running and job.pid, said


def test_jupyter_listens_on_loopback_only(host, v):
    port = v["jupyter_port"]
    assert host.socket(f"tcp://127.0.0.1:{port}").is_listening
    assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening
    assert not host.socket(f"tcp://:::{port}").is_listening


def test_jupyter_port_cannot_be_reached_from_here(entry, v):
    with pytest.raises(OSError):
        socket.create_connection((entry.address, v["jupyter_port"]), timeout=3).close()


def test_nginx_listens_on_80_and_its_config_passes(host):
    assert host.socket("tcp://0.0.0.0:80").is_listening
    with host.sudo():
        assert host.run("nginx -t").rc == 0


def test_login_page_comes_through_nginx(browser):
    r = browser.get("/login")
    assert r.status_code == 200
    assert r.headers.get("Server", "").startswith("nginx")
    assert "password" in r.text.lower()


def test_a_wrong_password_is_refused(browser):
    assert not browser.login("not-the-password-at-all")
    assert browser.get("/api/contents").status_code == 403


def test_logged_in_api_call_works(browser, password):
    assert browser.login(password)
    r = browser.api("GET", "/api/contents")
    assert r.status_code == 200 and r.json()["type"] == "directory"


def test_kernel_websocket_through_nginx_runs_code(browser, password):
    assert browser.login(password)
    assert browser.run_code("1+1") == "2"
