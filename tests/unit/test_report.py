"""The deploy's closing table: a line per host, colored by outcome, and the totals."""

from jupyterfab.deploy import HostReport, render_reports, summary_table
from jupyterfab.result import Result

RED, GREEN, CYAN = "\033[31m", "\033[32m", "\033[36m"


def reports():
    changed = HostReport("web1", [Result("nginx", {"diff": "..."}, "updated", state_id="nginx_site"),
                                  Result("jupyter", {}, "running", state_id="jupyter_service")], seconds=1.5)
    quiet = HostReport("web2", [Result("nginx", {}, "in the correct state", state_id="nginx_site")], seconds=0.4)
    broken = HostReport("web3", [Result("nginx", {}, "nginx -t failed", ok=False, state_id="nginx_site")])
    gone = HostReport("web4", error="unreachable: connection refused\nmore detail")
    return [changed, quiet, broken, gone]


def test_a_line_per_host_with_its_outcome_and_why_it_failed():
    lines = summary_table(reports(), test=False)
    assert lines[0].split() == ["host", "result", "time"]
    assert lines[1].startswith("web1  ok, 1 changed") and lines[1].endswith("1.50 s")
    assert lines[2].startswith("web2  ok, no changes")
    assert lines[3].startswith("web3  FAILED") and lines[3].endswith("failed: nginx_site")
    assert lines[4].startswith("web4  FAILED") and lines[4].endswith("unreachable: connection refused")
    assert lines[5] == "4 hosts: 2 ok, 2 failed; 1 state changed"


def test_colors_only_when_asked_and_by_outcome():
    plain = "\n".join(summary_table(reports(), test=False))
    assert "\033[" not in plain
    colored = summary_table(reports(), test=False, color=True)
    assert CYAN in colored[1] and GREEN in colored[2] and RED in colored[3] and RED in colored[5]
    # padding is computed on the text, so the columns line up with and without color
    assert colored[1].replace(CYAN, "").replace("\033[0m", "") == summary_table(reports(), test=False)[1]


def test_a_dry_run_counts_what_would_change():
    report = HostReport("web1", [Result("nginx", {"diff": "..."}, "would update", ok=None)])
    lines = summary_table([report], test=True)
    assert lines[1].startswith("web1  1 would change")
    assert lines[2] == "1 host: 1 ok, 0 failed; 1 state would change"


def test_the_full_report_ends_with_the_table():
    text = render_reports(reports(), test=False)
    assert "web4: FAILED: unreachable" in text
    assert text.splitlines()[-1] == "4 hosts: 2 ok, 2 failed; 1 state changed"
