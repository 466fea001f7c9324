"""An ACME certificate (tls: acme) as the host keeps it: certbot's live certificate
with more than 14 days left and no failed renewal, its renewal timer, the deploy
hook that reloads NGINX, and port 80 answering the CA's challenge while it
redirects everything else to HTTPS. The chain (``--ca-file``) and the served
certificate are test_origin.py's checks, shared by every TLS mode.

Skipped, saying why, for a host without ACME.
"""

import uuid

from jupyterfab.engine.initsys.base import sections, with_sections
from jupyterfab.stack.front import acme
from jupyterfab.verify.jupyterclient import JupyterSession


def test_acme_certificate_has_more_than_14_days_left_and_no_failed_renewal(host, certbot_host):
    with host.sudo():
        out = host.run(with_sections(*acme.state_commands(certbot_host["server_name"])).text).stdout
    state = acme.parse_state(sections(out), certbot_host["server_name"])
    print(f"certificate: {state.describe()}")
    assert state.not_after is not None, f"no certificate in {acme.LIVE_DIR}/{certbot_host['server_name']}/"
    assert state.days_left() > acme.MIN_DAYS_LEFT, f"certificate: {state.describe()}"
    assert not state.last_error, f"certificate: {state.describe()}"


def test_acme_renewal_timer_is_active(host, certbot_host, init):
    if init == "systemd":
        timer = host.service("certbot.timer")
        assert timer.is_running and timer.is_enabled, "certbot.timer is not active: nothing renews"
    else:   # Debian's certbot renews from cron where systemd does not run
        assert host.file("/etc/cron.d/certbot").exists


def test_acme_deploy_hook_reloads_nginx_after_a_renewal(host, certbot_host):
    hook = host.file(acme.DEPLOY_HOOK)
    assert hook.exists and hook.mode & 0o111 and hook.user == "root"
    assert hook.contains("reload nginx")


def test_acme_port_80_redirects_to_https_except_the_challenge(host, entry, certbot_host):
    token = f"jupyterfab-verify-{uuid.uuid4().hex}"
    path = f"{acme.WEBROOT}{acme.CHALLENGE_PATH}{token}"
    session = JupyterSession(entry.address, certbot_host["server_name"],
                             f"http://{certbot_host['server_name']}")
    with host.sudo():
        host.run_test("mkdir -p %s && echo %s > %s", f"{acme.WEBROOT}{acme.CHALLENGE_PATH}", token, path)
    try:
        challenge = session.get(f"{acme.CHALLENGE_PATH}{token}")
        assert (challenge.status_code, challenge.text.strip()) == (200, token), \
            f"the challenge path answered {challenge.status_code}"
    finally:
        with host.sudo():
            host.run("rm -f %s", path)
    for page in ("/lab", "/login", "/.well-known/other"):
        r = session.get(page)
        assert r.status_code == 301 and r.headers["Location"] == \
            f"https://{certbot_host['server_name']}{page}", f"{page}: {r.status_code}"
