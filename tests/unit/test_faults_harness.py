"""The fault-injection runner itself: it cuts where told, and a deploy reports the cut."""

from fakehost import FakeHost, FakeRunner
from support.faults import CutAfter, cut_points

from jupyterfab import inventory
from jupyterfab.engine.runner import HostUnreachable
from jupyterfab.engine.shell import Secret
from jupyterfab.stack import deploy


class Closing(FakeRunner):
    closed = False

    def close(self):
        self.closed = True


def test_cut_points_spread_over_the_run_or_cover_every_command():
    assert cut_points(40, None) == list(range(40))
    assert cut_points(40, 3) == [10, 20, 30]
    assert cut_points(64, 2) == [21, 42] and cut_points(15, 2) == [5, 10]
    assert cut_points(5, 9) == [0, 1, 2, 3, 4] and cut_points(9, 1) == [4]
    assert len(cut_points(100, 25)) == 25 and cut_points(100, 25)[-1] == 96
    assert cut_points(0, 3) == []


def test_command_k_plus_one_finds_the_connection_cut():
    inner = Closing(FakeHost(), name="web1")
    host = inventory.Host("web1", "203.0.113.5", vars={**inventory.VAR_DEFAULTS, "allow_plain_http": True})
    counted = CutAfter(Closing(FakeHost()), None)
    deploy.deploy_host(host, deploy.Options(password=Secret("pw"), log=lambda _: None), counted)
    total = counted.done
    assert total > 5 and not counted.cut

    cut = CutAfter(inner, 3)
    report = deploy.deploy_host(host, deploy.Options(password=Secret("pw"), log=lambda _: None), cut)
    assert report.text == "unreachable: web1: connection cut after command 3 (fault injection)"
    assert cut.cut and inner.closed and cut.done == 3 and len(inner.calls) < total
    try:
        cut.run("true")
    except HostUnreachable:
        pass
    else:
        raise AssertionError("a cut connection must stay cut")
