"""A bad argument to a local task (./run ...) is one line and exit 2, never a traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("argv, says", [
    (["docs", "--port", "abc"], "error: --port takes a TCP port (1 to 65535), not 'abc'"),
    (["docs", "--port", "99999"], "error: --port takes a TCP port (1 to 65535), not '99999'"),
    (["sandbox.up", "--subnet", "bogus"], "error: subnet 'bogus' is not a valid IPv4 network"),
    (["sandbox.up", "--subnet", "10.0.0.0/30"], "error: subnet 10.0.0.0/30 is too small"),
    (["sandbox.up", "--release", "sid"], "error: --release takes bookworm or trixie, not 'sid'"),
    (["sandbox.reboot", "no-such-host"], "error: no sandbox host named 'no-such-host'"),
])
def test_a_bad_argument_is_one_line_and_exit_2(argv, says):
    proc = subprocess.run([sys.executable, "-m", "invoke", *argv], cwd=PROJECT,
                          capture_output=True, text=True, timeout=60)
    assert proc.stderr.strip().startswith(says), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.returncode == 2
