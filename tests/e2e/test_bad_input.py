"""Bad input never reaches a host: a table of mistakes and attacks, each run through
the real `fab` (and `invoke`) commands, from hosts.yaml and from --set.

For every case: exit code 1 or 2, no traceback, the key named, and not one
connection to the host: a TCP listener stands at the host's address
(127.0.0.42, port 22 when free) and counts what arrives. No sandbox is needed;
the listener is the host. The figures are printed at the end of the module.
"""

from __future__ import annotations

import errno
import socket
import time
from dataclasses import dataclass, field

import pytest
import yaml
from e2e_support import run_tool

pytestmark = pytest.mark.e2e
ADDRESS = "127.0.0.42"
FIGURES = {"tried": 0, "refused before any connection": 0, "tracebacks": 0, "connections": 0}


@dataclass
class Case:
    name: str
    key: str                         # what the one-line error must name
    value: object = None             # the variable's value (key is the variable)
    via_set: bool = True             # also try it as --set key=value
    task: tuple = ("deploy",)
    text: str | None = None          # a whole inventory instead of one variable
    extra_vars: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    user: str = "root"
    names_set: bool = True           # the --set error says it came from --set
    tool: str = "fab"                # or invoke: task then holds its arguments


def alias_bomb() -> str:
    """The 431-byte "billion laughs": nine-fold aliases, seven levels deep."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdef", "bcdefg", strict=True):
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines.append("hosts: {trap: {address: 127.0.0.42, vars: {x_bomb: *g}}}")
    return "\n".join(lines) + "\n" + "# padding to the issue's size\n" * 3


CASES = [
    # the issue's own list
    Case("server_name adds an NGINX location", "server_name",
         "x.example.com; location /e { return 200 pwned; } #"),
    Case("server_name adds a root ExecStartPre", "server_name",
         ")\n[Service]\nExecStartPre=+/usr/bin/id\n#("),
    Case("notebook_dir adds an unless: to the sls", "notebook_dir",
         "/home/jupyter/nb\n    - unless: touch /tmp/pwned; false"),
    Case("notebook_dir is /home", "notebook_dir", "/home"),
    Case("notebook_dir climbs to /etc", "notebook_dir", "/home/jupyter/../../etc"),
    Case("jupyter_user is root", "jupyter_user", "root"),
    Case("jupyter_port, no longer used", "jupyter_port", 8888),
    Case("proxy_read_timeout negative", "proxy_read_timeout", -5),
    Case("client_max_body_size adds a location", "client_max_body_size",
         "100M;\n    location /x { return 200; }"),
    Case("prefix with a space", "prefix", "/opt/jupyter fab"),
    Case("jupyterlab_version is a URL", "jupyterlab_version", " @ https://evil.example/jl.whl"),
    Case("cloudflare_api_url elsewhere in clear", "cloudflare_api_url",
         "http://collector.evil.example/client/v4",
         extra_vars={"cloudflare_zone": "example.com"}),
    Case("a 431-byte YAML alias bomb", "aliases", text=alias_bomb(), via_set=False),
    Case("the SSH user smuggles an ssh option", "hosts.trap.user", via_set=False,
         text="hosts:\n  trap:\n    address: 127.0.0.42\n    user: \"-oProxyCommand=id\"\n"),
    Case("upgrade: server_name outside cloudflare_zone", "server_name", "jupyter.other.org",
         task=("upgrade",), extra_vars={"cloudflare_zone": "example.com"}, names_set=False),
    # more of the same kind
    Case("jupyter_user is a system account", "jupyter_user", "www-data"),
    Case("jupyter_user is the SSH user", "jupyter_user", "deploy", user="deploy",
         extra_vars={"notebook_dir": "/home/deploy/notebooks"}),
    Case("jupyter_user with a shell command", "jupyter_user", "jupyter;id"),
    Case("notebook_dir outside the user's home", "notebook_dir", "/srv/notebooks"),
    Case("notebook_dir relative", "notebook_dir", "notebooks"),
    Case("prefix inside the user's home", "prefix", "/home/jupyter/env"),
    Case("prefix is a system directory", "prefix", "/usr"),
    Case("python_packages from a URL without opting in", "python_packages",
         ["evil @ https://evil.example/evil.whl"]),
    Case("python_packages smuggles a pip option", "python_packages", ["--index-url=http://evil.example"]),
    Case("jupyter_server_version with a marker", "jupyter_server_version", ">=2.14; os_name=='nt'"),
    Case("apt_proxy not http", "apt_proxy", "ftp://mirror.example/debian"),
    Case("pip_index_url with a space", "pip_index_url", "http://index.example/simple extra"),
    Case("public_url a javascript: URL", "public_url", "javascript:alert(1)"),
    Case("public_ipv4 not an address", "public_ipv4", "203.0.113.999"),
    Case("public_ipv6 is IPv4", "public_ipv6", "203.0.113.10"),
    Case("server_name with a terminal escape", "server_name", "jupyter.example.com\x1b[2J"),
    Case("own variable with a newline", "x_note", "line one\nline two"),
    Case("env_provider unknown", "env_provider", "docker"),
    Case("build_env_here out of its choices", "build_env_here", 2),
    Case("conda_installer_sha256 short", "conda_installer_sha256", "abc123"),
    Case("cloudflare_zone with a shell command", "cloudflare_zone", "example.com;id"),
    Case("tls_key with a newline", "tls_key", "/root/key.pem\nrm -rf /"),
    Case("conda_prefix climbs", "conda_prefix", "/opt/conda/../../etc"),
    Case("the Cloudflare override in clear to elsewhere", "JUPYTERFAB_CLOUDFLARE_API_URL",
         via_set=False, task=("cloudflare",), extra_vars={"cloudflare_zone": "example.com",
                                                            "server_name": "jupyter.example.com",
                                                            "public_ipv4": "203.0.113.10"},
         env={"JUPYTERFAB_CLOUDFLARE_API_URL": "http://collector.evil.example/client/v4"}),
    Case("status --lines not a number", "--lines", via_set=False, task=("status", "--lines", "ten")),
    Case("backup of a notebook_dir that is /etc", "notebook_dir", "/etc", task=("backup",),
         via_set=False),
    Case("rotate-password with a prefix under the home", "prefix", "/home/jupyter/venv",
         task=("rotate-password",), via_set=False),
    Case("invoke verify with an NGINX injection", "server_name", "x.example.com;}", via_set=False,
         tool="invoke", task=("verify", "--hosts", "trap")),
    Case("invoke sandbox.up --count not a number", "--count", via_set=False, tool="invoke",
         task=("sandbox.up", "--count", "many")),
]


@pytest.fixture(scope="module")
def host_listener():
    """A TCP listener standing in for the host: it counts every connection attempt."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((ADDRESS, 22))
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
            raise
        listener.bind((ADDRESS, 0))
    listener.listen(64)
    listener.setblocking(False)
    yield listener
    listener.close()
    print("\nbad inputs through fab: " + ", ".join(f"{k} {v}" for k, v in FIGURES.items()))


def accepted(listener) -> int:
    count = 0
    while True:
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            return count
        connection.close()
        count += 1


def inventory_text(case: Case, port: int, *, with_value: bool) -> str:
    if case.text is not None:
        return case.text
    variables = dict(case.extra_vars)
    if with_value and case.value is not None:
        variables[case.key] = case.value
    return yaml.safe_dump({"hosts": {"trap": {"address": ADDRESS, "port": port, "user": case.user,
                                              "vars": variables}}}, allow_unicode=False)


def set_argument(case: Case) -> str:
    value = ",".join(case.value) if isinstance(case.value, list) else str(case.value)
    return f"{case.key}={value}"


def run_case(case: Case, listener, tmp_path, *, via_set: bool):
    port = listener.getsockname()[1]
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(inventory_text(case, port, with_value=not via_set))
    args = ["-H", "trap", *case.task, "--inventory", str(inventory)]
    if case.tool == "invoke":
        args = [*case.task] + (["--inventory", str(inventory)] if case.value is not None else [])
    if via_set:
        args += ["--set", set_argument(case)]
    started = time.monotonic()
    proc = run_tool(case.tool, *args, check=False, timeout=120,
                    env={"JUPYTERFAB_PASSWORD": "not-used-1234", **case.env})
    seconds = time.monotonic() - started
    connections = accepted(listener)
    output = proc.stdout + proc.stderr
    FIGURES["tried"] += 1
    FIGURES["tracebacks"] += "Traceback" in output
    FIGURES["connections"] += connections
    FIGURES["refused before any connection"] += proc.returncode in (1, 2) and connections == 0
    assert proc.returncode in (1, 2), output
    assert "Traceback" not in output, output
    assert case.key in output, output
    assert len(output.strip().splitlines()) == 1, output          # one line
    assert connections == 0, f"{connections} connection(s) to the host: {output}"
    return output, seconds


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_in_the_inventory_is_refused_before_any_connection(case, host_listener, tmp_path):
    run_case(case, host_listener, tmp_path, via_set=False)


SET_CASES = [c for c in CASES if c.via_set and c.text is None]


@pytest.mark.parametrize("case", SET_CASES, ids=[c.name for c in SET_CASES])
def test_bad_input_by_set_is_refused_before_any_connection(case, host_listener, tmp_path):
    output, _ = run_case(case, host_listener, tmp_path, via_set=True)
    assert "--set" in output or not case.names_set


def test_the_alias_bomb_is_the_issues_size_and_refused(host_listener, tmp_path):
    bomb = alias_bomb()
    assert 400 <= len(bomb.encode()) <= 440
    _, seconds = run_case(CASES[12], host_listener, tmp_path, via_set=False)
    # a figure, not a limit (4.5 s and 237 MiB before): the whole fab process
    print(f"\nalias bomb ({len(bomb.encode())} bytes): fab refused it in {seconds:.2f} s")


def test_a_valid_inventory_does_reach_the_host(host_listener, tmp_path):
    """The listener does see a deploy that passes the checks: zero above means refused."""
    port = host_listener.getsockname()[1]
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(yaml.safe_dump({"hosts": {"trap": {"address": ADDRESS, "port": port,
                                                            "vars": {"allow_plain_http": True}}}}))
    proc = run_tool("fab", "-H", "trap", "deploy", "--dry-run", "--inventory", str(inventory),
                    check=False, timeout=60, env={"JUPYTERFAB_PASSWORD": "not-used-1234"})
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert accepted(host_listener) >= 1
