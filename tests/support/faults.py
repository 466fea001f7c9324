"""Fault injection for the tests: an SSH connection that drops after command k.

``CutAfter(runner, k)`` passes the first ``k`` commands (``run`` and ``put``; the
host lock's own channel is not counted) to the real runner; the next one finds
the connection gone, as a dropped network or a killed controller would leave it:
the SSH transport is really closed (so the host sees the session end: its lock
holder exits, detached work such as an upgrade's guard carries on), and the
call raises ``HostUnreachable``. ``k = None`` never cuts and only counts, which
is how a sweep learns how many commands a run takes.

    counter = CutAfter(open_runner(host), None); deploy_host(host, options, counter)
    for k in cut_points(counter.done, sample=4):
        cut = CutAfter(open_runner(host), k); deploy_host(host, options, cut)
        ... check the host is sound, re-run, check it converged ...
"""

from __future__ import annotations

from jupyterfab.engine.runner import HostUnreachable


class CutAfter:
    """A runner whose connection drops after ``after`` commands (None: never)."""

    def __init__(self, runner, after: int | None):
        self.inner, self.after = runner, after
        self.host = runner.host
        self.done = 0
        self.cut = False

    def _next(self) -> None:
        if self.cut or (self.after is not None and self.done >= self.after):
            if not self.cut:
                self.cut = True
                self.inner.close()
            raise HostUnreachable(f"{self.host}: connection cut after command {self.after} "
                                  "(fault injection)")
        self.done += 1

    def run(self, command, **kw):
        self._next()
        return self.inner.run(command, **kw)

    def put(self, data: bytes, remote_path: str) -> None:
        self._next()
        return self.inner.put(data, remote_path)

    def hold(self, command):
        if self.cut:
            raise HostUnreachable(f"{self.host}: connection cut (fault injection)")
        return self.inner.hold(command)

    def get(self, remote_path: str) -> bytes:
        self._next()
        return self.inner.get(remote_path)

    def close(self) -> None:
        self.inner.close()


def cut_points(total: int, sample: int | None) -> list[int]:
    """Where to cut a run of ``total`` commands: after each of 0..total-1 (``sample``
    None), else ``sample`` points spread evenly inside it. The ends are left to the full
    sweep: a cut after the first command or after the last changes least."""
    if total <= 0:
        return []
    if sample is None or sample >= total:
        return list(range(total))
    return sorted({(i + 1) * total // (sample + 1) for i in range(max(sample, 1))})
