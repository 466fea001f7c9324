"""Helpers for end-to-end tests (imported by conftest and tests)."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from jupyterfab.dev import sandbox

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run_tool(tool: str, *args: str, env: dict | None = None, check: bool = True,
             timeout: float = 900) -> subprocess.CompletedProcess:
    """The project's own command (`fab`, `invoke`) as a user runs it: from the venv, in
    the project, with a clean environment and no terminal. ``proc.seconds`` is its wall time."""
    command = [str(BIN / tool), *args]
    environment = {"PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", **(env or {})}
    started = time.monotonic()
    proc = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, env=environment,
                          stdin=subprocess.DEVNULL, timeout=timeout)
    proc.seconds = time.monotonic() - started
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def fab_logged(*args: str, env: dict | None = None, check: bool = True,
               timeout: float = 1500) -> subprocess.CompletedProcess:
    """``fab ARGS`` as ``run_tool`` runs it, its command line, time, exit and output
    printed (pytest shows them when a test fails), failing the test when asked to."""
    proc = run_tool("fab", *args, env=env, check=False, timeout=timeout)
    print(f"$ fab {' '.join(args)}  ({proc.seconds:.1f} s, exit {proc.returncode})\n{proc.stdout}\n{proc.stderr}")
    if check and proc.returncode != 0:
        raise AssertionError(f"fab {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def secret_file(folder: Path, text: str, name: str = "password") -> Path:
    """``text`` in a 0600 file, as the tasks demand of password and token files."""
    path = folder / name
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def require_sandbox_prerequisites():
    try:
        sandbox.check_prerequisites()
    except sandbox.SandboxError as exc:
        # an error under CI: tests/conftest.py
        pytest.skip(f"end-to-end tests need sandbox hosts: {exc}")


def system_leftovers() -> list[str]:
    """What a teardown may leave, read straight from the system, not from sandbox.py."""
    left = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    left += [f"netns {n.split()[0]}" for n in netns.splitlines() if n.startswith(sandbox.NETNS_PREFIX)]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(sandbox.VETH_PREFIX) or name == sandbox.BRIDGE:
            left.append(f"link {name}")
    for line in Path("/proc/mounts").read_text().splitlines():
        if str(sandbox.STATE_ROOT) in line.split()[1]:
            left.append(f"mount {line.split()[1]}")
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    for line in ps.splitlines():
        if "systemd-nspawn" in line or "jupyterfab.dev.sandbox supervise" in line or (
                "apt-cacher-ng" in line and str(sandbox.STATE_ROOT) in line):
            left.append(f"process {line.strip()}")
    return left




def make_wheel(folder: Path, name: str, files: dict[str, bytes], version: str = "1.0") -> Path:
    """A pure-Python wheel of ``files`` (path in the wheel -> bytes), built by hand:
    METADATA, WHEEL and a RECORD with every file's sha256, as pip checks them."""
    import base64
    import hashlib
    import zipfile
    dist = f"{name.replace('-', '_')}-{version}"
    files = dict(files)
    files[f"{dist}.dist-info/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    files[f"{dist}.dist-info/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: jupyterfab-e2e\n"
                                        b"Root-Is-Purelib: true\nTag: py3-none-any\n")
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return wheel


def pep503_tree(root: Path, wheels: list[Path]) -> Path:
    """A PEP 503 "simple" index of ``wheels`` under ``root``: simple/<project>/ pages
    linking the files (with their sha256), as a mirror or devpi serves them."""
    import hashlib
    import html
    import re
    projects: dict[str, list[Path]] = {}
    for wheel in wheels:
        project = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
        projects.setdefault(project, []).append(wheel)
    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    for project, found in projects.items():
        page = root / "simple" / project
        page.mkdir(parents=True, exist_ok=True)
        links = []
        for wheel in found:
            target = files / wheel.name
            if not target.exists():
                target.symlink_to(wheel.resolve())
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
            links.append(f'<a href="../../files/{html.escape(wheel.name)}#sha256={digest}">'
                         f'{html.escape(wheel.name)}</a><br>')
        (page / "index.html").write_text("<!DOCTYPE html><html><body>\n" + "\n".join(links)
                                         + "\n</body></html>\n")
    (root / "simple" / "index.html").write_text(
        "<!DOCTYPE html><html><body>\n"
        + "\n".join(f'<a href="{p}/">{p}</a><br>' for p in sorted(projects)) + "\n</body></html>\n")
    return root


def serve_directory(root: Path, address: str):
    """A real HTTP server (the standard library's) for ``root`` on ``address``, in a
    thread: ``(url, stop)``."""
    import functools
    import http.server
    import threading
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer((address, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop():
        server.shutdown()
        server.server_close()
    return f"http://{address}:{server.server_address[1]}", stop
