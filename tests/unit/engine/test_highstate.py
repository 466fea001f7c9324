"""The engine: batching facts, re-probing only after a change, requisites,
dry-run safety, and the summary."""

from __future__ import annotations

import time

import pytest
from fakehost import FakeHost, FakeRunner, FakeUnit
from unit_support import by_id

from jupyterfab.engine import fleet, highstate
from jupyterfab.engine.facts.files import STAT_GROUP_SCRIPT
from jupyterfab.engine.runner import HostUnreachable
from jupyterfab.engine.shell import cmd
from jupyterfab.engine.states import REGISTRY, tls
from jupyterfab.engine.states.base import Run, StateFunction

WHEELS = 90


def full_stack(project, host: FakeHost) -> None:
    """About 25 states like the real deploy, with a 90-wheel wheelhouse."""
    for i in range(WHEELS):
        project.write(f"files/wheelhouse/pkg{i:02d}-1.0-py3-none-any.whl", f"wheel {i} " * 200)
    project.write("files/nginx.conf.j2", "server { listen 443; server_name {{ host }}; }\n")
    project.write("files/jupyter.service.j2", "[Service]\nExecStart=/opt/jupyter/bin/jupyter lab\n")
    project.write("files/jupyter_config.py.j2", "c.ServerApp.port = {{ port }}\n")
    project.vars = {"port": 8888}
    project.sls("""\
base_packages:
  pkg.installed:
    - pkgs: [nginx, python3-venv, python3-pip, curl, ca-certificates, git]
jupyter_group: {group.present: [{name: jupyter}, {system: true}]}
jupyter_user:
  user.present:
    - name: jupyter
    - system: true
    - home: /var/lib/jupyter
    - groups: [jupyter]
    - require: [{group: jupyter_group}]
{% for d in ['/srv/notebooks', '/etc/jupyter', '/var/log/jupyter', '/var/lib/jupyter/runtime',
             '/var/cache/jupyter', '/srv/notebooks/shared', '/srv/notebooks/examples',
             '/var/lib/jupyter/kernels'] %}
dir_{{ loop.index }}:
  file.directory:
    - name: {{ d }}
    - user: jupyter
    - group: jupyter
    - mode: "0750"
    - makedirs: true
    - require: [{user: jupyter_user}]
{% endfor %}
wheelhouse:
  file.recurse:
    - name: /opt/wheelhouse
    - source: wheelhouse
    - clean: true
jupyter_venv:
  pip.installed:
    - pkgs: [{% for i in range(90) %}pkg{{ '%02d' % i }}{% if not loop.last %}, {% endif %}{% endfor %}]
    - bin_env: /opt/jupyter
    - find_links: /opt/wheelhouse
    - no_index: true
    - require: [{file: wheelhouse}, {pkg: base_packages}]
jupyter_config:
  file.managed:
    - name: /etc/jupyter/jupyter_server_config.py
    - source: jupyter_config.py.j2
    - mode: "0640"
    - group: jupyter
    - check_cmd: python3 -m py_compile {tmp}
password_hash:
  file.managed:
    - name: /etc/jupyter/password
    - contents: "argon2:$argon2id$v=19$m=10240"
    - mode: "0600"
    - user: jupyter
    - show_changes: false
jupyter_unit:
  file.managed:
    - name: /etc/systemd/system/jupyter.service
    - source: jupyter.service.j2
jupyter_service:
  service.running:
    - name: jupyter
    - enable: true
    - watch: [{file: jupyter_unit}, {file: jupyter_config}, {pip: jupyter_venv}]
default_site: {file.absent: [{name: /etc/nginx/sites-enabled/default}]}
nginx_site:
  file.managed:
    - name: /etc/nginx/sites-available/jupyter.conf
    - source: nginx.conf.j2
    - makedirs: true
    - check_tree: /etc/nginx
    - check_cmd: nginx -t -q -c {tree}/nginx.conf
nginx_enabled:
  file.managed:
    - name: /etc/nginx/sites-enabled/jupyter.conf
    - contents: "include /etc/nginx/sites-available/jupyter.conf;"
    - makedirs: true
nginx_service:
  service.running:
    - name: nginx
    - enable: true
    - reload: true
    - watch: [{file: nginx_site}, {file: nginx_enabled}, {file: default_site}]
firewall_hint:
  cmd.run:
    - name: touch /var/lib/jupyter/.firewall-checked
    - creates: /var/lib/jupyter/.firewall-checked
self_signed_cert:
  cmd.run:
    - name: make-cert
    - unless: test -s /etc/ssl/private/jupyter.key
welcome:
  cmd.run:
    - name: echo deployed
    - onchanges: [{file: nginx_site}]
logrotate:
  file.managed:
    - name: /etc/logrotate.d/jupyter
    - contents: "/var/log/jupyter/*.log { weekly }"
""")
    host.available.update({n: "1.0" for n in
                           ("nginx", "python3-venv", "python3-pip", "curl", "ca-certificates", "git")})
    host.units["nginx"] = FakeUnit()
    host.add_file("/etc/nginx/sites-enabled/default", "default site")
    host.add_dir("/etc/logrotate.d")
    host.shell_patterns.append((__import__("re").compile(r"^(nginx -t -q -c /etc/nginx/nginx.conf|python3 -m py_compile .*|"
                                                         r"echo deployed|make-cert)$"),
                                (0, "", "")))
    host.shell["touch /var/lib/jupyter/.firewall-checked"] = \
        lambda h, env, script: (h.add_file("/var/lib/jupyter/.firewall-checked", ""), (0, "", ""))[1]
    host.shell["test -s /etc/ssl/private/jupyter.key"] = (1, "", "")


def test_full_stack_no_op_is_one_round_trip_and_fast(project):
    host = FakeHost()
    full_stack(project, host)
    runner = FakeRunner(host)
    decls = project.load()
    assert len(decls) == 25
    first = highstate.apply(decls, runner, test=False, context=project.context())
    assert [r.state_id for r in first if r.ok is False] == []
    assert len(host.pip["/opt/jupyter"]) == WHEELS
    assert len([p for p in host.files if p.startswith("/opt/wheelhouse/")]) == WHEELS + 1

    runner.calls.clear()
    started = time.monotonic()
    again = highstate.apply(project.load(), runner, test=False, context=project.context())
    elapsed = time.monotonic() - started
    # make-cert has an `unless` that stays false: it runs every time, like in Salt
    assert [r.state_id for r in again if r.changed] == ["self_signed_cert"]
    assert runner.calls[0].startswith("facts: ") and runner.calls[1:] == ["sh -c make-cert", "facts: 1 probes"]
    assert elapsed < 1.0, elapsed

    host.shell["test -s /etc/ssl/private/jupyter.key"] = (0, "", "")
    runner.calls.clear()
    noop = highstate.apply(project.load(), runner, test=False, context=project.context())
    assert not [r for r in noop if r.changed or r.ok is not True]
    assert runner.round_trips == 1
    assert len(runner.batches[0]) < 40        # 90 wheels cost one probe, not 90


def test_facts_are_reprobed_only_after_a_change_and_only_for_remaining_states(project):
    project.sls("""\
a: {file.managed: [{name: /etc/a}, {contents: a}]}
b: {file.managed: [{name: /etc/b}, {contents: b}]}
c: {file.managed: [{name: /etc/c}, {contents: c}]}
""")
    host = FakeHost()
    host.add_file("/etc/a", "a\n")
    host.add_file("/etc/c", "c\n")
    runner = FakeRunner(host)
    results = project.apply(runner)
    assert [r.changed for r in results] == [False, True, False]
    # every path's stat is one probe (StatGroup): four paths first, then the two left
    assert [c for c in runner.calls if c.startswith("facts")] == ["facts: 1 probes", "facts: 1 probes"]
    assert runner.calls[0] == "facts: 1 probes" and runner.calls[-1] == "facts: 1 probes"
    assert runner.batches[1] == [cmd("sh", "-c", STAT_GROUP_SCRIPT, "sh", "s-", "/etc/c", "/etc").display]


def test_skipped_states_cost_no_round_trip(project):
    project.sls("""\
broken:
  pkg.installed:
    - name: nosuchpkg
after:
  file.managed:
    - name: /etc/after
    - contents: x
    - require: [{pkg: broken}]
""")
    runner = FakeRunner(FakeHost())
    results = project.apply(runner)
    assert [r.ok for r in results] == [False, False]
    # facts, install, update, install again; no re-probe for the skipped state
    assert runner.round_trips == 4 and runner.calls[-1].endswith("install -y --no-install-recommends nosuchpkg")


def test_state_trying_to_change_the_host_in_dry_run_is_stopped(project, monkeypatch):
    def reckless(call):
        yield Run(cmd("rm", "-rf", "--", "/srv/data"))
        return call.done("did it")
    monkeypatch.setitem(REGISTRY, "test.reckless", StateFunction("test.reckless", reckless, {}))
    project.sls("x: test.reckless\n")
    host = FakeHost()
    host.add_dir("/srv/data")
    runner = FakeRunner(host)
    (result,) = project.apply(runner, test=True)
    assert result.ok is False and "dry run" in result.comment
    assert runner.commands() == [] and "/srv/data" in host.dirs


def test_unreadable_fact_fails_only_its_state(project):
    project.sls("""\
svc: service.running
conf: {file.managed: [{name: /etc/conf}, {contents: x}]}
""")

    class NoSystemd(FakeRunner):
        def _batch(self, script):
            result = super()._batch(script)
            out = result.stdout.replace("LoadState=not-found", "System has not been booted with systemd")
            return type(result)(0, out.replace(" rc 0\n", " rc 1\n", 1), "")

    runner = NoSystemd(FakeHost())
    results = by_id(project.apply(runner))
    assert results["svc"].ok is False and "cannot probe the host" in results["svc"].comment
    assert results["conf"].ok is True and results["conf"].changed


def test_template_error_fails_its_state_before_the_host_is_touched(project):
    project.write("files/bad.j2", "line one\n{{ undefined_thing }}\n")
    project.sls("""\
bad:
  file.managed:
    - name: /etc/bad
    - source: bad.j2
needs_bad:
  cmd.run:
    - name: reload-things
    - watch: [{file: bad}]
good: {file.managed: [{name: /etc/good}, {contents: x}]}
""")
    ctx = project.context()
    decls = project.load()
    failures = highstate.preflight(decls, ctx)
    assert [(r.state_id, r.ok) for r in failures] == [("bad", False)]
    assert failures[0].comment.startswith("files/bad.j2, line 2: undefined variable")
    runner = FakeRunner(FakeHost())
    results = by_id(highstate.apply(decls, runner, test=False, context=ctx))
    assert results["bad"].ok is False
    assert results["bad"].comment.startswith("files/bad.j2, line 2: undefined variable")
    # nothing at all is applied, not even the states that do not depend on it
    assert results["good"].ok is False and not results["good"].changed
    assert "nothing was sent to the host" in results["good"].comment
    assert runner.calls == []


def test_unreachable_host_stops_the_run(project):
    project.sls("a: {file.directory: [{name: /srv/a}]}\n")

    class Down:
        host = "down"

        def run(self, command, *, stdin=None, timeout=None):
            raise HostUnreachable("down: connection refused")

    with pytest.raises(HostUnreachable):
        project.apply(Down())


def test_summary_blocks_counts_and_colors(project):
    project.sls("""\
ok_dir: {file.directory: [{name: /srv/ok}]}
same: {file.directory: [{name: /srv}]}
bad:
  cmd.run:
    - name: failing-thing
""")
    host = FakeHost()
    host.shell["failing-thing"] = (2, "", "failing-thing: permission denied")
    results = project.apply(FakeRunner(host))
    text = fleet.summary("web1", results)
    assert "ID: ok_dir" in text and "ID: bad" in text and "ID: same" not in text
    assert "Stderr:" in text and "failing-thing: permission denied" in text
    assert "Succeeded: 2 (changed=1)" in text and "Failed:    1" in text
    assert "Total states run: 3" in text and "Total run time:" in text
    assert "\033[" not in text
    colored = fleet.summary("web1", results, color=True)
    assert "\033[31m" in colored and "\033[36m" in colored
    assert all(r.duration > 0 for r in results)


def test_onchanges_target_that_failed_fails_the_dependant(project):
    project.sls("""\
broken: {cmd.run: [{name: "false"}]}
after: {cmd.run: [{name: "true"}, {onchanges: [broken]}]}
""")
    results = project.apply(FakeRunner(FakeHost()))
    assert [(r.ok, r.comment) for r in results][1] == (False, "One or more requisite failed: cmd: broken")


PENDING_NGINX = "/var/lib/jupyterfab/pending/nginx"


def test_a_run_cut_before_the_watched_reload_reloads_on_the_next_run(project):
    """The file went live, the connection broke before `systemctl reload`: the
    re-run finds the file current, and reloads because the marker says so."""
    project.sls("""\
site:
  file.managed:
    - name: /etc/nginx/site.conf
    - contents: "{{ line }}"
nginx_service:
  service.running:
    - name: nginx
    - reload: true
    - watch:
      - file: site
""")
    host = FakeHost()
    host.add_file("/etc/nginx/site.conf", "a = 1\n")
    host.units["nginx"] = FakeUnit(active=True, enabled=True)

    class CutBeforeReload(FakeRunner):
        def run(self, command, **kw):
            if "systemctl reload" in str(command):
                raise HostUnreachable("connection cut (fault injection)")
            return super().run(command, **kw)

    project.vars = {"line": "a = 2"}
    with pytest.raises(HostUnreachable):
        project.apply(CutBeforeReload(host))
    assert host.text("/etc/nginx/site.conf") == "a = 2\n" and host.units["nginx"].reloads == 0
    assert PENDING_NGINX in host.files

    rerun = FakeRunner(host)
    results = by_id(project.apply(rerun))
    assert not results["site"].changed
    assert results["nginx_service"].ok and results["nginx_service"].changed
    assert host.units["nginx"].reloads == 1 and PENDING_NGINX not in host.files
    assert rerun.commands() == [f"systemctl reload -- nginx && rm -f -- {PENDING_NGINX}"]

    again = FakeRunner(host)
    assert not any(r.changed for r in project.apply(again)) and again.round_trips == 1


def test_a_pair_whose_key_check_fails_owes_no_reload_and_one_that_passes_carries_the_marker(project):
    """tls.pair checks the key against the certificate and switches in one round
    trip: the watching service's marker goes between the two, so a refused pair
    leaves none (nothing went live) and a switched one cannot lose its reload."""
    project.write("files/cert.j2", "CERT {{ n }}")
    project.write("files/key.j2", "KEY {{ n }}")
    project.sls("""\
tls_pair:
  tls.pair:
    - name: /etc/ssl/jupyterfab/site
    - certificate_source: cert.j2
    - key_source: key.j2
nginx_service:
  service.running:
    - name: nginx
    - reload: true
    - watch:
      - tls: tls_pair
""")
    host = FakeHost()
    host.add_dir("/etc/ssl/jupyterfab")
    host.units["nginx"] = FakeUnit(active=True, enabled=True)
    project.vars = {"n": 1}
    host.shell[tls.CHECK_PAIR] = (1, "", "the key in ... is not the certificate's: not switching")

    refused = FakeRunner(host)
    results = by_id(project.apply(refused))
    assert results["tls_pair"].ok is False and "not the certificate's" in results["tls_pair"].stderr
    assert results["nginx_service"].ok is False and host.units["nginx"].reloads == 0
    assert PENDING_NGINX not in host.files
    assert tls.SWITCH_PAIR not in host.shell_runs

    del host.shell[tls.CHECK_PAIR]
    switched = FakeRunner(host)
    results = by_id(project.apply(switched))
    assert results["tls_pair"].changed and results["nginx_service"].changed
    [switch] = [c for c in switched.commands() if "mv -T" in c]
    check, marker, switch_at = (switch.index("openssl x509"), switch.index(f"touch -- {PENDING_NGINX}"),
                                switch.index("ln -sfn"))
    assert check < marker < switch_at, switch
    assert host.units["nginx"].reloads == 1 and PENDING_NGINX not in host.files
    assert host.text("/etc/ssl/jupyterfab/site/cert.pem") == "CERT 1"
