"""env.unpacked: a Python environment built on the controller, unpacked on the host.

The host makes its own venv skeleton (``python3 -m venv --without-pip``, so the
interpreter links are its own), unpacks the bundle into it beside the live one,
and swaps it in with two renames; a marker names the bundle, so the same bundle
again is a no-op without sending anything.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from ..facts import FileContent
from ..shell import cmd
from .base import Arg, ArgError, Call, Run, abs_path, state, string

MARKER_NAME = ".jupyterfab-env"

# $1 venv, $2 bundle id, $3 python; the tarball arrives on stdin.
UNPACK = r"""
set -e
new="$1.new"; old="$1.old"
rm -rf "$new" "$old"
"$3" -m venv --without-pip "$new"
tar -xz -C "$new" --no-same-owner
printf '%s\n' "$2" > "$new/MARKER"
if [ -e "$1" ]; then mv "$1" "$old"; fi
mv "$new" "$1"
rm -rf "$old"
""".replace("MARKER", MARKER_NAME)


def _bundle_path(value) -> str:
    path = string(value)
    if not Path(path).is_file():
        raise ArgError(f"bundle {path} is not a file on this machine")
    return path


@state("env.unpacked", name=abs_path,
       facts=lambda name, args, ctx: {"marker": FileContent(posixpath.join(name, MARKER_NAME))},
       args={"bundle": Arg(_bundle_path, required=True),
             "python": Arg(string, default="python3")})
def unpacked(call: Call):
    bundle = Path(call.args["bundle"])
    wanted = bundle.name
    marker = (call.facts["marker"] or "").strip()
    if marker == wanted:
        return call.done(f"{call.name} is the environment {wanted}")
    why = "no environment yet" if not marker else f"environment was {marker}"
    changes = {"environment": {"old": marker, "new": wanted}}
    if call.test:
        return call.would(f"would unpack {wanted} into {call.name} ({why})", changes)
    call.changes.update(changes)
    unpack = cmd("sh", "-c", UNPACK, "sh", call.name, wanted, call.args["python"])
    result = yield Run(unpack, stdin=bundle.read_bytes(), check=False)
    if not result.ok:
        return call.command_failed(unpack, result, "unpacking the environment failed")
    return call.done(f"unpacked {wanted} into {call.name} ({why})")
