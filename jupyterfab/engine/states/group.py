"""group.present: a local group."""

from __future__ import annotations

from jupyterfab.engine.facts.users import GroupInfo
from jupyterfab.engine.shell import cmd
from jupyterfab.engine.states.base import Arg, Call, Run, boolean, integer, state, user_name


@state("group.present", name=user_name, facts=lambda name, args, ctx: {"group": GroupInfo(name)},
       args={"gid": Arg(integer), "system": Arg(boolean, default=False)})
def present(call: Call):
    """A group exists.

    name
        The group's name.
    gid
        Its group ID (only used when the group is created).
    system
        Create it as a system group.
    """
    group = call.facts["group"]
    gid = call.args["gid"]
    if group is None:
        command = cmd("groupadd", *(["--system"] if call.args["system"] else []),
                      *(["--gid", gid] if gid is not None else []), "--", call.name)
        changes = {"group": {"old": "", "new": call.name}}
        if call.test:
            return call.would(f"would create group {call.name}", changes)
        yield Run(command)
        return call.done(f"created group {call.name}", changes)
    if gid is not None and group.gid != gid:
        changes = {"gid": {"old": group.gid, "new": gid}}
        if call.test:
            return call.would(f"would change gid of group {call.name} to {gid}", changes)
        yield Run(cmd("groupmod", "--gid", gid, "--", call.name))
        return call.done(f"changed gid of group {call.name} to {gid}", changes)
    return call.done(f"group {call.name} is present")
