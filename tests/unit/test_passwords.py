"""The Jupyter password: sources, and hashes that stay put when the password does."""


import pytest

from jupyterfab import passwords
from jupyterfab.shell import Secret


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
