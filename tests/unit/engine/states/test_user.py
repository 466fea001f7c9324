"""user.present on its own: given the account, the command it yields. Creating an
account and correcting its shell and groups is scenarios/users.yaml."""

from __future__ import annotations

from unit_support import drive, make_call, texts

from jupyterfab.engine.facts.users import UserAccount


def test_user_append_groups_when_not_removing():
    account = UserAccount("ann", 1000, 1000, "/home/ann", "/bin/bash", "ann", ("docker",))
    call = make_call("user.present", "ann", {"user": account}, groups=["jupyter"], remove_groups=False)
    assert texts(drive(call)[0]) == ["usermod --append --groups jupyter -- ann"]
    call = make_call("user.present", "ann", {"user": account}, groups=["docker"])
    assert drive(call)[0] == []
