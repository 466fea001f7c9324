"""The deploy's closing table: a line per host, colored by outcome, and the totals."""

import json

from unit_support import fab_task

from jupyterfab.engine import fleet
from jupyterfab.engine.fleet import FleetResult, HostResult, outcome, render, summary_table, to_json
from jupyterfab.engine.result import Result
from jupyterfab.engine.runner import HostUnreachable
from jupyterfab.inventory import Host
from jupyterfab.stack.front import tlsplan

RED, GREEN, CYAN = "\033[31m", "\033[32m", "\033[36m"


def reports():
    changed = HostResult("web1", results=[Result("nginx", {"diff": "..."}, "updated", state_id="nginx_site"),
                                  Result("jupyter", {}, "running", state_id="jupyter_service")], seconds=1.5)
    quiet = HostResult("web2", results=[Result("nginx", {}, "in the correct state", state_id="nginx_site")], seconds=0.4)
    broken = HostResult("web3", results=[Result("nginx", {}, "nginx -t failed", ok=False, state_id="nginx_site")])
    gone = HostResult("web4").fail("unreachable: connection refused\nmore detail")
    return [changed, quiet, broken, gone]


def test_a_line_per_host_with_its_outcome_and_why_it_failed():
    lines = summary_table(reports(), test=False)
    assert lines[0].split() == ["host", "result", "time"]
    assert lines[1].startswith("web1  ok, 1 changed") and lines[1].endswith("1.50 s")
    assert lines[2].startswith("web2  ok, no changes")
    assert lines[3].startswith("web3  FAILED") and lines[3].endswith("failed: nginx_site")
    assert lines[4].startswith("web4  FAILED") and lines[4].endswith("unreachable: connection refused")
    assert lines[5] == "4 hosts: 2 ok, 2 failed; 1 state changed"


def test_what_a_failed_host_changed_before_failing_is_counted_and_said():
    # a server_name change: the site and Jupyter changed, then the certificate failed
    partly = HostResult("web1", results=[
        Result("nginx", {"diff": "..."}, "updated", state_id="nginx_site"),
        Result("jupyter", {"restarted": True}, "restarted", state_id="jupyter_service"),
        Result("lab.example.com", {}, "no certificate", ok=False, state_id="acme_certificate")])
    lines = summary_table([partly], test=False)
    assert lines[1].endswith("failed: acme_certificate (2 other states changed)")
    assert lines[2] == "1 host: 0 ok, 1 failed; 2 states changed"


def test_the_row_names_the_state_that_failed_before_those_it_stopped():
    # a broken template late in the run: every state before it is "not applied"
    stopped = [Result(f"s{i}", {}, "not applied: another state's template or source failed locally",
                      ok=False, state_id=f"s{i}", blocked=True) for i in range(4)]
    broken = Result("/etc/x", {}, "files/x.j2, line 4: Jinja syntax error", ok=False, state_id="x_config")
    after = Result("x", {}, "One or more requisite failed: file: x_config", ok=False, state_id="x_service",
                   blocked=True)
    lines = summary_table([HostResult("web1", results=[*stopped, broken, after])], test=False)
    assert lines[1].endswith("failed: x_config, s0, s1 ...")


def test_whether_a_state_failed_on_its_own_is_a_field_not_read_from_its_words():
    # a state's own failure whose comment happens to begin like a blocked one's
    own = Result("x", {}, "not applied: the host refused it", ok=False, state_id="x")
    blocked = Result("y", {}, "the template of x failed", ok=False, state_id="y", blocked=True)
    assert own.failed_on_its_own and not blocked.failed_on_its_own


def test_colors_only_when_asked_and_by_outcome():
    plain = "\n".join(summary_table(reports(), test=False))
    assert "\033[" not in plain
    colored = summary_table(reports(), test=False, color=True)
    assert CYAN in colored[1] and GREEN in colored[2] and RED in colored[3] and RED in colored[5]
    # padding is computed on the text, so the columns line up with and without color
    assert colored[1].replace(CYAN, "").replace("\033[0m", "") == summary_table(reports(), test=False)[1]


def test_a_dry_run_counts_what_would_change():
    report = HostResult("web1", results=[Result("nginx", {"diff": "..."}, "would update", ok=None)])
    lines = summary_table([report], test=True)
    assert lines[1].startswith("web1  1 would change")
    assert lines[2] == "1 host: 1 ok, 0 failed; 1 state would change"


def test_the_full_report_ends_with_the_table():
    text = render(FleetResult(reports()), test=False, table=True)
    assert "web4: FAILED: unreachable" in text
    assert text.splitlines()[-1] == "4 hosts: 2 ok, 2 failed; 1 state changed"


def test_day2_outcomes_are_a_line_each_or_a_block_and_the_same_json_shape():
    fleet = FleetResult([outcome("web1", True, "restart: jupyter is active"),
                         outcome("web2", False, "service:  jupyter failed\nlog:")])
    assert render(fleet).splitlines() == ["web1: ok: restart: jupyter is active",
                                          "== web2: FAILED", "service:  jupyter failed", "log:"]
    assert fleet.failed == ["web2"] and not fleet.ok
    data = json.loads(to_json(fleet, test=False))
    assert [(h["host"], h["ok"], h["error"]) for h in data["hosts"]] == [
        ("web1", True, ""), ("web2", False, "service:  jupyter failed\nlog:")]


def test_a_long_failure_is_wrapped_in_the_table_never_cut():
    why = ("this host has no Jupyter password yet: set JUPYTERFAB_PASSWORD, give --password-file, "
           "or run from a terminal to be asked (a dry run needs none)")
    lines = summary_table([HostResult("web1").fail(why), HostResult("web22", seconds=1)], test=False)
    first, rest = lines[1], lines[2:-2]
    note_at = first.index("this host")
    assert rest and all(line[:note_at].isspace() for line in rest), lines
    assert " ".join([first[note_at:], *(line.strip() for line in rest)]) == why
    assert all(len(line) <= 110 for line in lines) and lines[-2].startswith("web22")


def test_a_user_without_passwordless_sudo_is_told_so_whichever_command_met_it():
    """Each task met sudo's refusal in its own words: the deploy's 'unreachable: ... cannot
    take the host lock ...: sudo: a password is required', status's 'could not tell which
    init system runs it (sudo: a password is required)'."""
    def lock_refused(host):
        raise HostUnreachable(f"{host.name}: cannot take the host lock /run/lock/jupyterfab.lock: "
                              "sudo: a password is required")

    def probe_refused(host):
        return HostResult(host.name).fail(f"{host.name}: could not tell which init system runs it "
                                          "(sudo: a password is required), so there is no jupyter log")

    admin = Host("web1", "198.18.0.12", user="admin")
    for action in (lock_refused, probe_refused):
        [result] = fleet.run([admin], action).hosts
        assert result.failed
        assert result.text.startswith("admin cannot sudo on 198.18.0.12 without a password")
        assert "admin ALL=(ALL) NOPASSWD:ALL" in result.text and "/etc/sudoers.d/admin" in result.text
    [other] = fleet.run([admin], lambda h: HostResult(h.name).fail("sudo: unknown user")).hosts
    assert other.text == "sudo: unknown user"


def test_fab_cloudflare_prints_a_line_per_change_and_the_table_not_every_state(tmp_path, monkeypatch, capsys):
    """As deploy's default: it printed every state Salt-style (13 lines for no change)."""
    class Session:
        def __init__(self, dry_run, token_file):
            pass

        def after_states(self, plan, *addresses):
            return [Result("dns", {"created": {"type": "A"}}, "created A jupyter.example.com -> 198.18.0.11",
                           state_id="cloudflare DNS A jupyter.example.com", function="cloudflare.dns_record"),
                    Result("ssl", {}, "ssl is strict", state_id="cloudflare zone setting ssl",
                           function="cloudflare.zone_setting")]

        def close(self):
            pass

    monkeypatch.setattr(tlsplan, "EdgeSession", Session)
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "t" * 40)
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text("defaults:\n  vars: {cloudflare_zone: example.com, public_ipv4: 198.18.0.11, "
                         "public_ipv6: '2001:db8::1'}\nhosts:\n  web1: {address: 198.18.0.11}\n")
    fab_task("cloudflare")(["web1"], inventory=str(inventory))
    out, err = capsys.readouterr()
    assert "Summary for" not in out and "ssl is strict" not in out, out
    assert out.strip().splitlines()[-1] == "1 host: 1 ok, 0 failed; 1 state changed"
    assert err.strip().splitlines() == ["web1: cloudflare DNS A jupyter.example.com (cloudflare.dns_record) "
                                        "changed in 0.0 s: created A jupyter.example.com -> 198.18.0.11"]
    fab_task("cloudflare")(["web1"], inventory=str(inventory), verbose=True)
    assert "Summary for web1" in capsys.readouterr().out
