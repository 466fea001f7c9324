"""A real browser against a deployed host: headless Chromium logs in with the password
through NGINX, opens a new notebook in JupyterLab, runs a cell and reads its output.

Used by ``invoke verify --browser`` (test_browser.py) and the end-to-end tests. The
browser reaches the host by its public name (``public_url``), as a person's would:
Chromium's ``--host-resolver-rules`` maps that name to the inventory address, so no
DNS entry and no Host-header trick is needed.

Selenium with Debian's ``chromium`` and ``chromium-driver`` rather than Playwright:
Debian builds chromedriver from the same source as its chromium, so the two always
match, security upgrades included, and nothing ever downloads a browser. Playwright
drives the Chromium build it bundles and only may work with another one.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import ssl
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from jupyterfab.engine.errors import ServiceError
from jupyterfab.engine.shell import as_root

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CA_ENV_VAR = "JUPYTERFAB_VERIFY_CA"
ARTIFACTS_ENV_VAR = "JUPYTERFAB_ARTIFACTS"
CODE, EXPECTED = "print(6*7)", "42"   # computed by the kernel: the page cannot just echo it

# Bounded waits, in seconds, for each step (a first JupyterLab load fetches a few MB of
# JavaScript; a first kernel start imports ipykernel).
PAGE_TIMEOUT = 30
LAB_TIMEOUT = 60
KERNEL_TIMEOUT = 60
OUTPUT_TIMEOUT = 30
OPEN_NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"   # the notebook tab in front


class BrowserCheckFailed(ServiceError):
    """The check failed; ``screenshot`` is what the browser showed at that moment."""

    def __init__(self, message: str, screenshot: Path | None = None):
        super().__init__(message + (f" (screenshot: {screenshot})" if screenshot else ""))
        self.screenshot = screenshot


@dataclass
class BrowserResult:
    output: str                        # the cell's output text, as the page shows it
    screenshot: Path                   # the notebook with the cell and its output
    seconds: float                     # the whole check, browser start to output
    steps: dict[str, float] = field(default_factory=dict)   # seconds per step


def require_browser() -> None:
    """Fail with the fix when Debian's chromium or chromium-driver is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        raise BrowserCheckFailed(
            f"the browser check needs {' and '.join(missing)}: "
            f"{as_root('apt-get install chromium chromium-driver')} (./run installs them)")


def default_artifacts_dir() -> Path:
    return Path(os.environ.get(ARTIFACTS_ENV_VAR) or Path.cwd() / "artifacts")


def check_certificate(public_url: str, address: str, ca_file: str, *, source_address: str | None = None,
                      timeout: float = 10) -> dict:
    """TLS handshake with ``address`` as the public name, validated against ``ca_file``.

    The browser is then told to ignore certificate errors (it does not know a test
    CA), so this is where the certificate is actually checked.
    """
    url = urlsplit(public_url)
    context = ssl.create_default_context(cafile=ca_file)
    try:
        with socket.create_connection((address, url.port or 443), timeout=timeout,
                                      source_address=(source_address, 0) if source_address else None) as raw:
            with context.wrap_socket(raw, server_hostname=url.hostname) as tls:
                return tls.getpeercert()
    except ssl.SSLCertVerificationError as exc:
        raise BrowserCheckFailed(f"the certificate of {url.hostname} ({address}) does not "
                                 f"verify against {ca_file}: {exc.verify_message}") from None
    except (OSError, ssl.SSLError) as exc:
        raise BrowserCheckFailed(f"no TLS connection to {url.hostname} ({address}:"
                                 f"{url.port or 443}): {exc}") from None


def run_notebook_cell(public_url: str, address: str | None, password: str, *,
                      verify: bool | str = True, source_address: str | None = None,
                      label: str = "", artifacts_dir: Path | None = None,
                      code: str = CODE, expected: str = EXPECTED) -> BrowserResult:
    """Log in at ``public_url``, open a new Python 3 notebook from the JupyterLab
    launcher, run ``code`` and return its output with a screenshot.

    ``address``: where the public name is served (the inventory address), or None to
    let DNS say (through Cloudflare). ``verify``, as for requests: True (the browser
    trusts the system's CAs), a CA file (checked here first, then the browser ignores
    certificate errors) or False (not checked). ``source_address``: connect from this
    local address (inside Cloudflare's ranges, for an origin that admits only those).

    Raises BrowserCheckFailed with what went wrong (a refused login, a step that timed
    out, another output than ``expected``), keeping a screenshot of that moment too.
    """
    require_browser()
    url = urlsplit(public_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise BrowserCheckFailed(f"public_url {public_url!r} is not an http:// or https:// URL")
    port = url.port or (443 if url.scheme == "https" else 80)
    target = address or url.hostname
    # With a CA file the certificate is checked here, in Python; without one the
    # browser validates it against the system's CAs, as anyone's browser would.
    ignore_cert_errors = url.scheme == "https" and verify is not True
    if url.scheme == "https" and isinstance(verify, str):
        check_certificate(public_url, target, verify, source_address=source_address)
    artifacts = Path(artifacts_dir or default_artifacts_dir())
    artifacts.mkdir(parents=True, exist_ok=True)
    stem = f"browser-{_safe(label or url.hostname)}-{time.strftime('%Y%m%d-%H%M%S')}"
    relay = _Relay(target, port, source_address) if source_address else None
    # Chromium's own resolver sends the public name to the host (or the relay),
    # whatever DNS says; the URL, Host header, SNI and cookies keep the name.
    endpoint = relay.endpoint if relay else (f"[{address}]" if address and ":" in address else address)
    check = _Check(public_url.rstrip("/"), url.hostname, endpoint, ignore_cert_errors)
    try:
        output = check.run(password, code)
        if output != expected:
            raise BrowserCheckFailed(f"the cell {code!r} printed {output!r}, not {expected!r}")
        result = BrowserResult(output, check.screenshot(artifacts / f"{stem}.png"),
                               time.monotonic() - check.started, check.steps)
        check.remove_created()
        return result
    except BrowserCheckFailed as exc:
        raise BrowserCheckFailed(str(exc), check.screenshot(artifacts / f"{stem}-failed.png")) from None
    except Exception as exc:   # WebDriver errors: say which step, keep the picture
        raise BrowserCheckFailed(f"{check.step}: {type(exc).__name__}: {_first_line(exc)}",
                                 check.screenshot(artifacts / f"{stem}-failed.png")) from exc
    finally:
        check.close()
        if relay:
            relay.close()


class _Relay:
    """Chromium cannot pick the local address it connects from, and an origin locked
    down to Cloudflare's ranges admits nothing else: this relays connections from a
    loopback port to ``address:port``, made from ``source`` (bytes as they are, TLS
    included, so the browser still speaks to the origin end to end)."""

    def __init__(self, address: str, port: int, source: str):
        self.target, self.source = (address, port), source
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:   # closed: the check is over
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10, source_address=(self.source, 0))
            except OSError:
                client.close()   # the browser sees the connection fail, and says so
                continue
            upstream.settimeout(None)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self.listener.close()
        for sock in self.sockets:
            sock.close()


def _notebook_path(driver) -> str:
    """The open document's path from a JupyterLab URL such as .../lab/tree/Untitled.ipynb."""
    path = urlsplit(driver.current_url).path
    return unquote(path.split("/lab/tree/", 1)[1]) if "/lab/tree/" in path else ""


def _visible(selector: str):
    return EC.visibility_of_element_located((By.CSS_SELECTOR, selector))


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _first_line(exc: Exception) -> str:
    text = getattr(exc, "msg", None) or str(exc)
    return (text.strip().splitlines() or [""])[0]


class _Check:
    """One headless Chromium, its profile and the steps it has gone through."""

    def __init__(self, base: str, hostname: str, endpoint: str | None, ignore_cert_errors: bool):
        self.base, self.hostname, self.endpoint = base, hostname, endpoint
        self.ignore_cert_errors = ignore_cert_errors
        self.started = self._step_started = time.monotonic()
        self.steps: dict[str, float] = {}
        self.step = "starting Chromium"
        self.driver = None
        self.created = ""   # the notebook this check made, removed when it ends
        self.profile = tempfile.mkdtemp(prefix="jupyterfab-chromium-")

    def _begin(self, step: str) -> None:
        now = time.monotonic()
        self.steps[self.step] = round(now - self._step_started, 2)
        self.step, self._step_started = step, now

    def _start(self):
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--window-size=1280,900", "--no-first-run",
                    f"--user-data-dir={self.profile}",
                    "--no-proxy-server",           # straight to the host, as NGINX sees users
                    "--disable-dev-shm-usage",     # small /dev/shm in containers and CI
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-extensions", "--disable-default-apps"):
            options.add_argument(arg)
        if self.endpoint:
            options.add_argument(f"--host-resolver-rules=MAP {self.hostname} {self.endpoint}")
        if os.geteuid() == 0:
            options.add_argument("--no-sandbox")   # Chromium refuses to start as root otherwise
        if self.ignore_cert_errors:
            options.add_argument("--ignore-certificate-errors")   # checked already, or not wanted
        # chromedriver is on localhost: an $http_proxy must not get in between. Selenium
        # deprecates this for a ClientConfig that webdriver.Chrome() does not take yet.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            options.ignore_local_proxy_environment_variables()
        # An explicit driver path also keeps Selenium Manager (which could download one) out.
        self.driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
        self.driver.set_page_load_timeout(PAGE_TIMEOUT)
        self.driver.set_script_timeout(15)

    def run(self, password: str, code: str) -> str:
        self._start()
        d = self.driver

        self._begin("opening the login page")
        # ?reset: a fresh workspace, so the launcher shows even if an earlier check left a tab open
        lab = urlsplit(self.base).path + "/lab?reset"
        login_url = f"{self.base}/login?next={quote(lab, safe='')}"
        try:
            d.get(login_url)
        except WebDriverException as exc:   # e.g. net::ERR_CONNECTION_REFUSED
            if "net::" not in str(exc):
                raise
            self._refused(login_url, re.search(r"net::\S+", str(exc))[0])

        def form_or_error_page(drv):
            for sel in ("input[type=password]", ".error-code"):   # .error-code: Chromium's own pages
                found = [e for e in drv.find_elements(By.CSS_SELECTOR, sel) if e.is_displayed()]
                if found:
                    return sel, found[0]
            return False
        kind, field_ = self._wait(PAGE_TIMEOUT, "login form with a password field", form_or_error_page)
        if kind == ".error-code":
            self._refused(login_url, field_.text.strip())

        self._begin("logging in")
        field_.send_keys(password)
        d.find_element(By.CSS_SELECTOR, "#login_submit, form button[type=submit]").click()

        def login_answered(drv):   # truthy once the server has answered the form
            errors = drv.find_elements(By.CSS_SELECTOR, ".message.error")
            if errors:
                return ("refused", errors[0].text.strip())
            return not urlsplit(drv.current_url).path.endswith("/login") and ("accepted", "")
        answer, refusal = self._wait(PAGE_TIMEOUT, "answer to the login", login_answered)
        if answer == "refused":
            raise BrowserCheckFailed(f"login refused: {self.hostname} answered {refusal!r} "
                                     "to the password given")

        self._begin("loading JupyterLab")
        launcher = ".jp-LauncherCard[data-category='Notebook']"
        self._wait(LAB_TIMEOUT, "the JupyterLab launcher's notebook cards", _visible(launcher))

        self._begin("opening a new notebook")
        cards = d.find_elements(By.CSS_SELECTOR, launcher)
        python = [c for c in cards if "Python 3" in (c.get_attribute("title") or c.text)]
        (python or cards)[0].click()
        editor = self._wait(LAB_TIMEOUT, "the new notebook's first cell editor",
                            _visible(f"{OPEN_NOTEBOOK} .jp-Notebook .jp-Cell .jp-InputArea-editor"))
        # The launcher made a new untitled notebook; JupyterLab shows its path in the URL.
        self.created = self._wait(PAGE_TIMEOUT, "notebook path in the page's URL", _notebook_path)

        self._begin("waiting for the kernel")
        self._wait_idle()

        self._begin("running the cell")
        editor.click()
        editor.find_element(By.CSS_SELECTOR, "[contenteditable=true]").send_keys(code)
        d.switch_to.active_element.send_keys(Keys.SHIFT, Keys.ENTER)
        out = self._wait(OUTPUT_TIMEOUT, "the cell's output",
                         _visible(f"{OPEN_NOTEBOOK} .jp-Cell .jp-OutputArea-output"))
        self._wait_idle()
        text = out.text.strip()
        self._begin("done")
        return text

    def _refused(self, url: str, code: str):
        hint = ""
        if "CERT" in code:
            hint = (": this machine's CAs do not trust the server's certificate; give its CA "
                    f"file with --ca-file or ${CA_ENV_VAR}")
        at = f" at {self.endpoint}" if self.endpoint else " by DNS"
        raise BrowserCheckFailed(f"Chromium could not open {url} ({self.hostname}{at}): {code}{hint}")

    def _wait_idle(self):
        """Until the new notebook's kernel is idle, as the server knows it (its sessions
        API) and as the page shows it (the toolbar's indicator, once it is connected)."""
        def idle(drv):
            sessions = drv.execute_async_script(_SESSIONS_JS) or {}   # read by the page, with its login
            states = [s["state"] for s in sessions.values() if s["path"] == self.created]
            shown = drv.find_elements(By.CSS_SELECTOR, f"{OPEN_NOTEBOOK} .jp-Notebook-ExecutionIndicator")
            return (states == ["idle"] and shown and shown[0].get_attribute("data-status") == "idle")
        self._wait(KERNEL_TIMEOUT, "idle kernel", idle)

    def _wait(self, timeout: float, what: str, condition):
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.2).until(condition)
        except TimeoutException:
            raise BrowserCheckFailed(
                f"{self.step}: no {what} within {timeout} s (page {self.driver.current_url!r}, "
                f"title {self.driver.title!r})") from None

    def screenshot(self, path: Path) -> Path | None:
        if self.driver is None:
            return None
        try:
            self.driver.save_screenshot(str(path))
        except Exception:   # a dead browser has nothing to show; the error says why
            return None
        return path

    def remove_created(self) -> None:
        """Delete the notebook this check made, as a user would from JupyterLab; a server
        that cannot (its trash refused, say) fails the check, naming the answer."""
        self.step = "deleting the notebook"
        created, self.created = self.created, ""
        if created:
            answer = self.driver.execute_async_script(_REMOVE_JS, created)
            if answer != "ok":
                raise BrowserCheckFailed(f"JupyterLab could not delete the notebook the check "
                                         f"opened, {created}: the server answered {answer}")

    def close(self):
        if self.driver is not None:
            if self.created:   # a failed check too leaves the notebook folder as it was
                with contextlib.suppress(Exception):
                    self.driver.execute_async_script(_REMOVE_JS, self.created)
            self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)


_CONFIG_JS = """
const cfg = JSON.parse(document.getElementById('jupyter-config-data').textContent);
const base = cfg.baseUrl || '/';
const xsrf = decodeURIComponent((document.cookie.match(/(?:^|; )_xsrf=([^;]*)/) || [])[1] || '');
const headers = {'X-XSRFToken': xsrf};
"""
# Jupyter sessions: id -> {path, state} (its kernel's execution state)
_SESSIONS_JS = _CONFIG_JS + """
const done = arguments[arguments.length - 1];
fetch(base + 'api/sessions', {headers}).then(r => r.json())
  .then(list => done(Object.fromEntries(list.map(
    s => [s.id, {path: s.path, state: s.kernel && s.kernel.execution_state}]))))
  .catch(e => done({}));
"""
_REMOVE_JS = _CONFIG_JS + """
const [path, done] = [arguments[0], arguments[arguments.length - 1]];
(async () => {
  const sessions = await (await fetch(base + 'api/sessions', {headers})).json();
  for (const s of sessions.filter(s => s.path === path)) {   // stops its kernel too
    await fetch(base + 'api/sessions/' + s.id, {method: 'DELETE', headers});
  }
  const gone = await fetch(base + 'api/contents/' + path.split('/').map(encodeURIComponent).join('/'),
                           {method: 'DELETE', headers});
  return gone.ok ? 'ok' : gone.status + ' ' + (await gone.text()).slice(0, 300);
})().then(done, e => done(String(e)));
"""
