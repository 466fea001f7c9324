"""A fleet: four hosts of one inventory group deployed at once, one of them unreachable.

The three that answer are deployed all the way (first deploy, in parallel); the
fourth is reported by name; the exit code says the run as a whole failed.
"""

import re

import pytest
import requests
from e2e_support import PROJECT, run_tool, secret_file

from jupyterfab.dev import sandbox
from jupyterfab.verify.jupyterclient import JupyterSession

pytestmark = pytest.mark.e2e
PASSWORD = "e2e-fleet-password"


@pytest.fixture(scope="module")
def fleet(sandbox_factory, tmp_path_factory):
    inv = sandbox_factory(3)
    tmp = tmp_path_factory.mktemp("fleet")
    secret = secret_file(tmp, PASSWORD)
    inventory = tmp / "hosts.yaml"
    # 198.18.0.99 is on the sandbox bridge with nothing behind it: traffic stays here.
    inventory.write_text((sandbox.workdir_for(PROJECT) / "hosts.yaml").read_text()
                         + "  ghost:\n    address: 198.18.0.99\n    groups: [sandbox]\n")
    proc = run_tool("fab", "deploy", "--group", "sandbox", "--inventory", str(inventory),
                    "--password-file", str(secret), check=False)
    print(f"fleet of 3 + 1 unreachable: {proc.seconds:.1f} s")
    # At once, before anything else can give NGINX time: what a user's browser gets the
    # moment `fab deploy` has returned.
    right_after = {name: [login_page_status(inv.hosts[name].address) for _ in range(20)]
                   for name in ("sandbox1", "sandbox2", "sandbox3")}
    return {"inv": inv, "proc": proc, "right_after": right_after}


def login_page_status(address: str) -> str:
    reply = requests.get(f"http://{address}/login", headers={"Host": "jupyter.example.com"},
                         timeout=10, allow_redirects=False)
    is_jupyter_login = reply.status_code == 200 and 'id="password_input"' in reply.text
    return "login page" if is_jupyter_login else f"{reply.status_code} {reply.text[:60]!r}"


def test_the_run_fails_naming_only_the_unreachable_host(fleet):
    proc = fleet["proc"]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "deploy failed on: ghost" in proc.stderr
    assert re.search(r"^ghost\s+FAILED .*unreachable", proc.stdout, re.M), proc.stdout


def test_one_result_line_per_host_and_one_summary(fleet):
    lines = fleet["proc"].stdout.splitlines()
    table = lines[lines.index(next(s for s in lines if s.split()[:3] == ["host", "result", "time"])):]
    assert [s.split()[0] for s in table[1:5]] == ["sandbox1", "sandbox2", "sandbox3", "ghost"]
    assert table[5] == "4 hosts: 3 ok, 1 failed; " + table[5].split("; ")[1]


def test_the_three_reachable_hosts_are_fully_deployed(fleet):
    for name in ("sandbox1", "sandbox2", "sandbox3"):
        assert re.search(rf"^{name}\s+ok, \d+ changed", fleet["proc"].stdout, re.M), fleet["proc"].stdout
        host = fleet["inv"].hosts[name]
        session = JupyterSession(host.address, "jupyter.example.com", "http://jupyter.example.com")
        assert session.login(PASSWORD), name
        assert session.run_code("sum(range(4))") == "6", name


def test_every_request_right_after_the_deploy_gets_the_login_page(fleet):
    # NGINX's reload only signals; the deploy returns once the new workers serve.
    for name, answers in fleet["right_after"].items():
        assert answers == ["login page"] * 20, (name, answers)
