"""A real browser against a freshly deployed sandbox host: headless Chromium reaches it
by its public name through NGINX, logs in, opens a notebook in JupyterLab, runs a cell
and sees the output; a wrong password is refused with a clear message. Then
`invoke verify --browser` runs the same check, to prove the task's wiring."""

import re
import time
from pathlib import Path

import pytest
from e2e_support import PROJECT, run_tool, secret_file

from jupyterfab.dev import sandbox
from jupyterfab.engine.runner import open_runner
from jupyterfab.stack.front import tlsplan
from jupyterfab.verify.browser import BrowserCheckFailed, run_notebook_cell

pytestmark = pytest.mark.e2e
PASSWORD = "e2e-browser-password-7"
ARTIFACTS = PROJECT / "artifacts"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def deployed(sandbox_factory, tmp_path_factory):
    inv = sandbox_factory(1)
    secret = secret_file(tmp_path_factory.mktemp("secret"), PASSWORD)
    inventory = str(sandbox.workdir_for(PROJECT) / "hosts.yaml")
    run_tool("fab", "-H", "sandbox1", "deploy", "--inventory", inventory, "--password-file", str(secret))
    host = inv.hosts["sandbox1"]
    url = tlsplan.public_url(host.vars, tlsplan.plan_for(host.name, host.vars))
    return {"host": host, "url": url, "inventory": inventory, "secret": str(secret)}


def test_the_public_url_is_a_name_not_the_address(deployed):
    # The browser must go by name (resolved to the host by Chromium's own rules), so a
    # check that passed by IP would prove nothing about the server_name NGINX answers to.
    assert deployed["url"] in ("http://jupyter.example.com", "https://jupyter.example.com")
    assert deployed["host"].address not in deployed["url"]


def test_chromium_logs_in_opens_a_notebook_runs_a_cell_and_sees_42(deployed):
    result = run_notebook_cell(deployed["url"], deployed["host"].address, PASSWORD,
                               label="sandbox1", artifacts_dir=ARTIFACTS)
    print(f"\nbrowser check: {result.seconds:.1f} s {result.steps}\nscreenshot: {result.screenshot}")
    assert result.output == "42"
    shot = result.screenshot.read_bytes()
    assert result.screenshot.parent == ARTIFACTS and "sandbox1" in result.screenshot.name
    assert shot.startswith(PNG_MAGIC) and len(shot) > 10_000
    # the notebook the check opened is gone again: a check leaves the user's folder as it was
    listing = open_runner(deployed["host"]).run("ls -A /home/jupyter/notebooks").stdout
    assert "Untitled" not in listing, listing


def test_a_wrong_password_is_refused_with_a_clear_message_and_a_screenshot(deployed):
    started = time.time()
    with pytest.raises(BrowserCheckFailed) as failed:
        run_notebook_cell(deployed["url"], deployed["host"].address, "not-the-password",
                          label="sandbox1", artifacts_dir=ARTIFACTS)
    message = str(failed.value)
    assert "login refused: jupyter.example.com answered 'Invalid credentials'" in message
    shot = failed.value.screenshot
    assert shot.name.endswith("-failed.png") and shot.stat().st_mtime >= started - 1
    assert shot.read_bytes().startswith(PNG_MAGIC)


def test_another_output_than_expected_fails_the_check(deployed):
    # The output is read from the page, computed by the kernel: 6*9 is not 42.
    with pytest.raises(BrowserCheckFailed, match=r"the cell 'print\(6\*9\)' printed '54', not '42'"):
        run_notebook_cell(deployed["url"], deployed["host"].address, PASSWORD, code="print(6*9)",
                          label="sandbox1", artifacts_dir=ARTIFACTS)


def test_invoke_verify_browser_runs_the_same_check(deployed):
    # the direct runs above left JupyterLab's (empty) checkpoint folder: start without it
    open_runner(deployed["host"]).run("rmdir /home/jupyter/notebooks/.ipynb_checkpoints || true")
    proc = run_tool("invoke", "verify", "--browser", "--hosts", "sandbox1",
                    "--inventory", deployed["inventory"], "--password-file", deployed["secret"], timeout=600)
    assert "browser check on sandbox1: print(6*7) -> '42'" in proc.stdout, proc.stdout
    # it leaves the notebook folder as it found it: no empty .ipynb_checkpoints/ either
    listing = open_runner(deployed["host"]).run("ls -A /home/jupyter/notebooks").stdout.split()
    assert "Untitled.ipynb" not in listing and ".ipynb_checkpoints" not in listing, listing
    [line] = [s for s in proc.stdout.splitlines() if s.startswith("browser check on sandbox1")]
    assert Path(line.split("screenshot: ")[1]).is_file()
    # the browser test came on top of the usual checks, only because --browser asked for it
    [summary] = [s for s in proc.stdout.splitlines() if re.match(r"\d+ passed", s)]
    ran = sum(int(n) for n in re.findall(r"(\d+) (?:passed|skipped)", summary))
    plain = run_tool("invoke", "verify", "--hosts", "sandbox1", "--inventory", deployed["inventory"],
                     "--password-file", deployed["secret"], "--pytest-args=--collect-only",
                     check=False, timeout=300)
    assert "test_browser.py" not in plain.stdout and f"{ran - 1} tests collected" in plain.stdout, \
        plain.stdout


def test_a_server_that_cannot_delete_a_notebook_fails_the_check(deployed):
    # A file where JupyterLab's trash folder goes: the server answers the delete with 400
    # (send2trash fails), as a user pressing Delete in the file browser would see.
    runner = open_runner(deployed["host"])
    trash = "/home/jupyter/.local/share/Trash"
    runner.run(f"rm -rf {trash} && install -d -o jupyter -g jupyter /home/jupyter/.local/share "
               f"&& install -o jupyter -g jupyter /dev/null {trash}")
    try:
        with pytest.raises(BrowserCheckFailed, match=r"JupyterLab could not delete the notebook the "
                           r"check opened, Untitled\d*\.ipynb: the server answered 400 "):
            run_notebook_cell(deployed["url"], deployed["host"].address, PASSWORD,
                              label="sandbox1", artifacts_dir=ARTIFACTS)
    finally:
        runner.run(f"rm -rf {trash} /home/jupyter/notebooks/Untitled*.ipynb "
                   "/home/jupyter/notebooks/.ipynb_checkpoints")
