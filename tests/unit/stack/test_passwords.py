"""The Jupyter password: sources, and hashes that stay put when the password does."""

import pytest
from unit_support import PROJECT

from jupyterfab import inventory
from jupyterfab.engine.shell import Secret
from jupyterfab.engine.states.base import Context
from jupyterfab.engine.states.file import render_source
from jupyterfab.stack import deploy, passwords


def test_hash_is_jupyter_servers_argon2_format_and_verifies():
    h = passwords.hash_password(Secret("correct horse"))
    assert h.startswith("argon2:$argon2id$v=19$m=10240,t=10,p=8$")
    assert passwords.matches(h, Secret("correct horse"))
    assert not passwords.matches(h, Secret("wrong horse"))


def test_same_password_keeps_the_deployed_hash_and_a_new_one_replaces_it():
    deployed = passwords.hash_password(Secret("first password"))
    assert passwords.choose_hash(Secret("first password"), deployed) == deployed
    new = passwords.choose_hash(Secret("second password"), deployed)
    assert new != deployed and passwords.matches(new, Secret("second password"))
    assert passwords.choose_hash(None, deployed) == deployed
    with pytest.raises(passwords.PasswordError, match="no Jupyter password yet"):
        passwords.choose_hash(None, None)


def test_many_hosts_share_one_new_hash_and_one_check_per_deployed_hash(monkeypatch):
    calls = []
    real = passwords.matches
    monkeypatch.setattr(passwords, "matches", lambda h, p: calls.append(h) or real(h, p))
    old = passwords.hash_password(Secret("old password"))
    chooser = passwords.HashChooser(Secret("new password"))
    a, b, c = chooser(old), chooser(old), chooser(None)
    assert a == b == c and passwords.matches(a, Secret("new password"))
    assert calls.count(old) == 1


def test_password_file_must_be_private(tmp_path):
    f = tmp_path / "pw"
    f.write_text("a long enough password\n")
    f.chmod(0o644)
    with pytest.raises(passwords.PasswordError, match="readable by others.*chmod 600"):
        passwords.read_password_file(f)
    f.chmod(0o600)
    assert passwords.read_password_file(f).reveal() == "a long enough password"


def test_sources_file_beats_environment_and_secret_never_prints(tmp_path):
    f = tmp_path / "pw"
    f.write_text("from-the-file-123\n")
    f.chmod(0o600)
    env = {passwords.ENV_VAR: "from-the-environment"}
    assert passwords.from_sources(str(f), environ=env).reveal() == "from-the-file-123"
    secret = passwords.from_sources(None, environ=env, prompt=False)
    assert secret.reveal() == "from-the-environment"
    assert "from-the" not in f"{secret} {secret!r}"
    assert passwords.from_sources(None, environ={}, prompt=False) is None
    with pytest.raises(passwords.PasswordError, match="shorter than 8"):
        passwords.from_sources(None, environ={passwords.ENV_VAR: "short"}, prompt=False)


NEW_HOST = {"hashed_password": "", "python": "3.11", "machine": "x86_64", "glibc": (2, 36)}


def new_host_config(options: deploy.Options, said: list[str] | None = None) -> str:
    """The Jupyter config a deploy with ``options`` renders for a host with no password yet."""
    host = inventory.Host("web1", "203.0.113.10", vars={**inventory.VAR_DEFAULTS, "build_env_here": 0,
                                                         "allow_plain_http": True})
    variables = deploy.materials(deploy.plan_host(host, NEW_HOST), NEW_HOST, options.hashes,
                                 (said if said is not None else []).append)
    ctx = Context(host="web1", vars=variables, files_dir=PROJECT / "files")
    return render_source("jupyter/jupyter_server_config.py.j2", ctx)[0]


def test_a_dry_run_of_a_new_host_needs_no_password_and_says_the_hash_would_be_written():
    said: list[str] = []
    config = new_host_config(deploy.Options(test=True, password=None), said)
    assert f"hashed_password = \"{passwords.DRY_RUN_HASH}\"" in config
    # the config's diff is not shown (it holds the hash): the dry run says it in a line
    assert said == [f"web1: no Jupyter password yet: the deploy will write its hash into {deploy.CONFIG_FILE} "
                    "(give it with --password-file, $JUPYTERFAB_PASSWORD or at the prompt)"]
    assert "the real deploy writes the hash" in config


def test_a_real_deploy_of_a_new_host_still_needs_the_password():
    with pytest.raises(passwords.PasswordError, match="no Jupyter password yet"):
        new_host_config(deploy.Options(test=False, password=None))


def test_a_dry_run_with_a_password_shows_its_real_hash():
    config = new_host_config(deploy.Options(test=True, password=Secret("a long enough password")))
    assert passwords.DRY_RUN_HASH not in config and 'hashed_password = "argon2:$argon2id$' in config
