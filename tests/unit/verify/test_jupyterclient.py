"""The Jupyter client: percentiles of cell round trips, and how long it waits for a kernel."""

import json
import time

import pytest
import websocket

from jupyterfab.verify.jupyterclient import JupyterError, execute, percentile, run_cell_output


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


class Replays(OnlyPings):
    """A kernel WebSocket that answers the execute request with the given messages, each
    carrying the request's id as its parent, as ipykernel sends them."""

    def __init__(self, *messages):
        super().__init__()
        self.messages = list(messages)

    def recv_data(self, control_frame=False):
        msg_id = json.loads(self.sent[-1])["header"]["msg_id"]
        kind, content = self.messages.pop(0)
        return websocket.ABNF.OPCODE_TEXT, json.dumps(
            {"msg_type": kind, "parent_header": {"msg_id": msg_id}, "content": content}).encode()


def test_a_cell_the_kernel_aborted_is_an_error_not_an_empty_result():
    # ipykernel aborts execute requests while it recovers from an error or an interrupt
    # (seen when a restart landed on the server's own restart of a killed kernel)
    aborted = Replays(("status", {"execution_state": "busy"}), ("execute_reply", {"status": "aborted"}),
                      ("status", {"execution_state": "idle"}))
    with pytest.raises(JupyterError, match="did not run '6 \\* 7': its reply says 'aborted'"):
        run_cell_output(aborted, "6 * 7", timeout=5)
    ran = Replays(("status", {"execution_state": "busy"}),
                  ("execute_result", {"data": {"text/plain": "42"}}),
                  ("execute_reply", {"status": "ok"}), ("status", {"execution_state": "idle"}))
    assert run_cell_output(ran, "6 * 7", timeout=5)["result"] == "42"


def test_an_error_reply_ahead_of_its_error_message_names_the_error():
    failed = Replays(("execute_reply", {"status": "error", "ename": "NameError", "evalue": "x"}))
    with pytest.raises(JupyterError, match="raised NameError: x"):
        run_cell_output(failed, "x", timeout=5)
