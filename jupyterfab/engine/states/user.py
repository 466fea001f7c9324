"""user.present: a local account, created with useradd and corrected with usermod."""

from __future__ import annotations

from jupyterfab.engine.facts.users import GroupInfo, UserAccount, UserInfo
from jupyterfab.engine.shell import cmd
from jupyterfab.engine.states.base import (
    Arg,
    Call,
    Run,
    abs_path,
    boolean,
    integer,
    list_of,
    state,
    user_name,
)


def _gid(value):
    return integer(value) if isinstance(value, int) or str(value).isdigit() else user_name(value)


def _facts(name, args, ctx) -> dict:
    # useradd --user-group fails when a group of that name exists already
    return {"user": UserInfo(name), "same_name_group": GroupInfo(name)}


@state("user.present", name=user_name, facts=_facts, args={
    "uid": Arg(integer),
    "gid": Arg(_gid),
    "system": Arg(boolean, default=False),
    "home": Arg(abs_path),
    "shell": Arg(abs_path),
    "createhome": Arg(boolean, default=True),
    "groups": Arg(list_of(user_name)),
    "remove_groups": Arg(boolean, default=True),
})
def present(call: Call):
    """A user account exists with these settings.

    name
        The user's name.
    uid
        Its user ID (only used when the account is created).
    gid
        Its primary group (name or ID).
    system
        Create it as a system account.
    home
        Its home directory.
    shell
        Its login shell.
    createhome
        Create the home directory with the account.
    groups
        Supplementary groups it belongs to.
    remove_groups
        Remove it from supplementary groups not listed in ``groups``.
    """
    a = call.args
    account: UserAccount | None = call.facts["user"]
    if account is None:
        if a["gid"] is not None:
            primary = ["--gid", a["gid"]]
        elif call.facts.get("same_name_group") is not None:
            primary = ["--gid", call.name]
        else:
            primary = ["--user-group"]
        command = cmd("useradd", *(["--system"] if a["system"] else []),
                      *(["--uid", a["uid"]] if a["uid"] is not None else []), *primary,
                      *(["--home-dir", a["home"]] if a["home"] else []),
                      *(["--shell", a["shell"]] if a["shell"] else []),
                      "--create-home" if a["createhome"] else "--no-create-home",
                      *(["--groups", ",".join(a["groups"])] if a["groups"] else []),
                      "--", call.name)
        changes = {"user": {"old": "", "new": call.name}}
        if call.test:
            return call.would(f"would create user {call.name}", changes)
        yield Run(command)
        return call.done(f"created user {call.name}", changes)

    options: list = []
    changes: dict = {}

    def differs(key, current, wanted, option):
        if wanted is not None and current != wanted:
            changes[key] = {"old": current, "new": wanted}
            options.extend([option, wanted])

    differs("uid", account.uid, a["uid"], "--uid")
    if a["gid"] is not None:
        current_gid = account.gid if isinstance(a["gid"], int) else account.primary_group
        differs("gid", current_gid, a["gid"], "--gid")
    differs("home", account.home, a["home"], "--home")
    differs("shell", account.shell, a["shell"], "--shell")
    if a["groups"] is not None:
        # the primary group is membership enough; `id -Gn` would not list it twice
        have, want = set(account.groups), set(a["groups"]) - {account.primary_group}
        if a["remove_groups"] and have != want:
            changes["groups"] = {"old": sorted(have), "new": sorted(want)}
            options += ["--groups", ",".join(sorted(want))]
        elif not a["remove_groups"] and not want <= have:
            changes["groups"] = {"old": sorted(have), "new": sorted(have | want)}
            options += ["--append", "--groups", ",".join(sorted(want - have))]
    if not changes:
        return call.done(f"user {call.name} is present")
    if call.test:
        return call.would(f"would change user {call.name}: {', '.join(changes)}", changes)
    yield Run(cmd("usermod", *options, "--", call.name))
    return call.done(f"changed user {call.name}: {', '.join(changes)}", changes)
