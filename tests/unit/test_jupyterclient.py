"""The Jupyter client: percentiles of cell round trips, and how long it waits for a kernel."""

import time

import pytest
import websocket

from jupyterfab.jupyterclient import JupyterError, execute, percentile, run_cell_output


def test_percentiles_by_nearest_rank():
    samples = [float(x) for x in range(1, 201)]     # 1..200, shuffled order must not matter
    samples.reverse()
    assert percentile(samples, 50) == 100.0
    assert percentile(samples, 99) == 198.0
    assert percentile(samples, 100) == 200.0 and percentile([7.0], 50) == 7.0


class OnlyPings:
    """A kernel WebSocket whose server only pings, as Jupyter Server does (every 30 s) while
    a kernel never answers: each ping arrives well inside the socket's timeout."""

    def __init__(self):
        self.sent, self.timeout = [], 60.0

    def send(self, data):
        self.sent.append(data)

    def settimeout(self, seconds):
        self.timeout = seconds

    def recv_data(self, control_frame=False):
        started = time.monotonic()
        while not control_frame:    # websocket-client answers each ping and keeps waiting
            time.sleep(0.05)
            assert time.monotonic() - started < 3, "still waiting: the pings hid the timeout"
        time.sleep(min(0.05, self.timeout))
        return websocket.ABNF.OPCODE_PING, b""

    def recv(self):
        return self.recv_data()[1]


@pytest.mark.parametrize("wait_for", [run_cell_output, execute])
def test_a_kernel_that_never_answers_ends_the_wait_at_its_timeout_despite_the_pings(wait_for):
    started = time.monotonic()
    with pytest.raises(JupyterError, match="within 1 s"):
        wait_for(OnlyPings(), "6 * 7", timeout=1)
    assert time.monotonic() - started < 3


class Closes(OnlyPings):
    def recv_data(self, control_frame=False):
        return websocket.ABNF.OPCODE_CLOSE, b""


def test_a_websocket_the_server_closes_ends_the_wait_at_once():
    with pytest.raises(JupyterError, match="closed the kernel's WebSocket"):
        run_cell_output(Closes(), "6 * 7", timeout=30)
