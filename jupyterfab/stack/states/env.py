"""env.unpacked: a Python environment built on the controller, unpacked on the host.

The host makes its own venv skeleton (``python3 -m venv --without-pip``, so the
interpreter links are its own) under ``envs/`` beside the live environment,
unpacks the bundle into it, and switches the live path (``name``, a symlink) to
it with one rename; the environment it replaces is kept as the previous one (for
``fab upgrade``'s rollback) and older ones are pruned. See ``envlayout``. A marker
names the bundle, so the same bundle again is a no-op without sending anything,
and a bundle that is still there as the previous environment is switched back to
without sending it again.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from jupyterfab.engine import payload
from jupyterfab.engine.facts.files import FileContent
from jupyterfab.engine.shell import chain, cmd
from jupyterfab.engine.states.base import Arg, Call, Run, abs_path, bundle_file, state, string
from jupyterfab.stack.envs import envlayout

MARKER_NAME = ".jupyterfab-env"


def env_id(bundle_name: str) -> str:
    """The directory under envs/ for a bundle: its file name without .tar.gz."""
    return bundle_name.removesuffix(".tar.gz")


def _facts(name, args, ctx):
    base = posixpath.dirname(name)
    kept = posixpath.join(base, envlayout.ENVS, env_id(Path(args["bundle"]).name), MARKER_NAME)
    return {"marker": FileContent(posixpath.join(name, MARKER_NAME)), "kept": FileContent(kept)}


@state("env.unpacked", name=abs_path, facts=_facts,
       args={"bundle": Arg(bundle_file, required=True),
             "python": Arg(string, default="python3")})
def unpacked(call: Call):
    """Put an environment built on this machine (a bundle from ``envbundle``) live on the
    host, beside the live one, switched in by one rename.

    name
        The live environment's path (a symlink into envs/ once unpacked).
    bundle
        The bundle's path on this machine; its name identifies the environment.
    python
        The host's Python the bundle's scripts are rewritten to.
    """
    bundle = Path(call.args["bundle"])
    wanted = bundle.name
    marker = (call.facts["marker"] or "").strip()
    if marker == wanted:
        return call.done(f"{call.name} is the environment {wanted}")
    kept = (call.facts.get("kept") or "").strip() == wanted
    why = "no environment yet" if not marker else f"environment was {marker}"
    changes = {"environment": {"old": marker, "new": wanted}}
    if call.test:
        how = "switch back to the kept" if kept else "unpack"
        return call.would(f"would {how} {wanted} into {call.name} ({why})", changes)
    call.changes.update(changes)
    eid = env_id(wanted)
    switch = chain(cmd("sh", "-c", envlayout.SWITCH, "sh", call.name, eid),
                   cmd("sh", "-c", envlayout.PRUNE, "sh", call.name))
    if kept:
        result = yield Run(switch, check=False)
        if not result.ok:
            return call.command_failed(switch, result, "switching the environment failed")
        return call.done(f"switched {call.name} back to the kept environment {wanted} ({why})")
    # one round trip: unpacked beside the live one, then (with a watching service's
    # pending marker) switched in
    unpack = cmd("sh", "-c", envlayout.UNPACK, "sh", call.name, eid, call.args["python"],
                 MARKER_NAME, wanted)
    result = yield Run(switch, stdin=payload.shared(bundle), check=False, staged_by=unpack)
    if not result.ok:
        return call.command_failed(chain(unpack, switch), result, "unpacking the environment failed")
    return call.done(f"unpacked {wanted} into {call.name} ({why})")
