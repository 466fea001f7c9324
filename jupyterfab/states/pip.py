"""pip.installed: requirements in a virtualenv, skipped without calling pip when
nothing that decides the install has changed.

pip itself takes seconds even when everything is installed, so the decision
rests on a marker file in the venv holding a hash of the requirement list, the
pip options and the wheelhouse manifest (when ``find_links`` is a directory
mirrored by file.recurse). A new wheel in the wheelhouse changes its manifest,
hence the hash, hence pip runs.

``installer: uv`` installs uv into the venv with pip first, then lets uv do the
real install: about four times faster than pip for JupyterLab's ~90 wheels
(uv must be on the index or in the wheelhouse).

``only_missing: true`` is for an environment someone else keeps installing into
(the notebook user's kernel environment): no marker; the environment's own
interpreter (run as ``user``, inside that user's box) says which requirements it
does not satisfy, and only those are installed. Nothing else is upgraded or removed, and an
environment whose interpreter no longer runs is reported, never replaced.

``bundle`` (an environment built on the controller from the same requirements,
see ``envbundle``) makes a new environment by unpacking it instead of installing:
nothing to download, unzip or byte-compile on the host. It is unpacked beside the
environment and renamed into place, so an interrupted run leaves no environment
(the next run starts again) rather than half of one.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from pathlib import Path

from .. import envbundle
from ..facts.commands import command_as
from ..facts.files import MANIFEST_NAME, FileContent, PathExists, Stat
from ..facts.packages import UnsatisfiedRequirements
from ..shell import chain
from .base import (
    Arg,
    ArgError,
    Call,
    Put,
    Run,
    abs_path,
    boolean,
    bundle_file,
    list_of,
    requirement,
    state,
    string,
    url,
    user_name,
)

MARKER_NAME = ".jupyterfab-pip"

# Copies the uv executable out of the newest uv wheel in a wheelhouse (argv 1)
# to argv 2, atomically; faster than bootstrapping pip to install uv.
EXTRACT_UV = """
import glob, os, sys, zipfile
wheels = sorted(glob.glob(os.path.join(sys.argv[1], "uv-*.whl")))
if not wheels:
    sys.exit("no uv wheel in " + sys.argv[1] + ": add uv to the wheelhouse or use installer: pip")
with zipfile.ZipFile(wheels[-1]) as z:
    data = z.read(next(n for n in z.namelist() if n.endswith("/scripts/uv")))
tmp = sys.argv[2] + ".tmp"
with open(tmp, "wb") as f:
    f.write(data)
os.chmod(tmp, 0o755)
os.replace(tmp, sys.argv[2])
"""


# $1 the environment (not there yet), $2 the Python that makes its venv; the bundle
# on stdin. Run as the environment's owner.
SEED = r"""
set -e
dest="$1"; tmp="$1.partial"
mkdir -p "${dest%/*}"
rm -rf "$tmp"
"$2" -m venv --without-pip "$tmp"
tar -xz -C "$tmp" --no-same-owner
chmod -R go-w "$tmp"
mv -T "$tmp" "$dest"
"""


def _installer(value) -> str:
    name = string(value)
    if name not in ("pip", "uv"):
        raise ArgError(f"installer must be pip or uv, not {name!r}")
    return name


def requirements(name: str, args: dict) -> tuple[str, ...]:
    return args["pkgs"] or (name,)


def _check(name: str, args: dict) -> None:
    if not args["pkgs"]:
        try:
            requirement(name)
        except ArgError as exc:
            raise ArgError(f"name: {exc} (use `pkgs:` for a list)") from None


def _facts(name: str, args: dict, ctx) -> dict:
    venv = args["bin_env"]
    if args["only_missing"]:
        facts = {"env": UnsatisfiedRequirements(venv, requirements(name, args), ctx.run_as(args["user"]))}
    else:
        facts = {"marker": FileContent(posixpath.join(venv, MARKER_NAME)),
                 "python": PathExists(posixpath.join(venv, "bin", "python"))}
    if args["installer"] == "uv":
        facts["uv"] = PathExists(posixpath.join(venv, "bin", "uv"))
    if args["find_links"]:
        facts["wheelhouse"] = Stat(posixpath.join(args["find_links"], MANIFEST_NAME), checksum=True)
    return facts


def install_hash(call: Call) -> str:
    wheelhouse = call.facts.get("wheelhouse")
    decided_by = {
        "requirements": list(requirements(call.name, call.args)),
        **{key: call.args[key] for key in ("find_links", "no_index", "index_url", "installer")},
        "wheelhouse_manifest": wheelhouse.sha256 if wheelhouse else None,
    }
    return hashlib.sha256(json.dumps(decided_by, sort_keys=True).encode()).hexdigest()


@state("pip.installed", check=_check, facts=_facts, args={
    "pkgs": Arg(list_of(requirement)),
    "bin_env": Arg(abs_path, required=True),
    "find_links": Arg(abs_path),
    "no_index": Arg(boolean, default=False),
    "index_url": Arg(url),
    "user": Arg(user_name),
    "python": Arg(string, default="python3"),
    "installer": Arg(_installer, default="pip"),
    "only_missing": Arg(boolean, default=False),
    "broken_hint": Arg(string, default=""),
    "conda": Arg(abs_path),
    "conda_python": Arg(string, default=""),
    "conda_channels": Arg(list_of(string), default=[]),
    "bundle": Arg(bundle_file),
})
def installed(call: Call):
    """Python packages installed in a virtual environment (created when missing), only
    when the wanted requirements differ from the ones installed last.

    name
        A requirement, when ``pkgs`` is not given.
    pkgs
        Requirements (``jupyterlab==4.4.*``), installed together.
    bin_env
        The virtual environment's path.
    find_links
        A wheelhouse folder on the host.
    no_index
        Install from ``find_links`` only, never from an index.
    index_url
        The index to use instead of PyPI.
    user
        Create and install the environment as this user (inside the user's confinement
        when the deploy gives it one, as it does the notebook user: nothing of the
        environment's runs outside it).
    python
        The Python that creates the environment.
    installer
        ``pip``, or ``uv`` (then ``uv`` must be in the wheelhouse or on the index).
    only_missing
        For an environment its user installs into too: no marker; the environment's
        own Python (run as ``user``) says which requirements it lacks, and only those
        are installed; nothing else is upgraded or removed; a broken one is reported.
    broken_hint
        What to tell the user when the environment is broken (only_missing).
    conda
        Create the environment with this conda (``conda create --prefix``, with Python
        and pip) instead of ``python -m venv``: a conda environment, where ``conda
        install`` works too.
    conda_python
        The Python version ``conda create`` pins (empty: conda chooses).
    conda_channels
        The channels ``conda create`` uses (instead of conda's configured ones).
    bundle
        A tarball on this machine of an environment built from the same requirements
        (``envbundle``): a new environment is unpacked from it, as ``user``, instead of
        installed; an existing one is never touched by it.
    """
    a = call.args
    venv = a["bin_env"]
    reqs = requirements(call.name, a)
    # every step as `user` runs inside the box the deploy gives that user, if any
    runas, bound = call.ctx.run_as(a["user"]), call.ctx.command_timeout
    if a["only_missing"]:
        env = call.facts["env"]
        if env.state == "broken":
            return call.fail(f"the environment {venv} is broken ({env.error or 'its python does not run'}); "
                             f"it is left as it is{': ' + a['broken_hint'] if a['broken_hint'] else ''}")
        if env.state == "ok" and not env.unsatisfied:
            return call.done(f"{venv} has all {len(reqs)} requirements (anything else in it is left alone)")
        has_python = env.state == "ok"
        wanted = None
        if has_python:
            reqs = env.unsatisfied
        why = "no environment yet" if not has_python else "missing: " + ", ".join(reqs)
    else:
        wanted = install_hash(call)
        marker = call.facts["marker"]
        has_python = call.facts["python"]
        if has_python and marker is not None and marker.split("\n", 1)[0] == wanted:
            return call.done(f"{len(reqs)} requirements in {venv} are up to date (marker matches)")
        why = ("no virtualenv yet" if not has_python else "no marker yet" if marker is None
               else "requirements or wheelhouse changed")

    # A few missing packages in an environment that is already there: its own pip.
    uv_mode = a["installer"] == "uv" and not (a["only_missing"] and has_python)
    if has_python:
        create = None
    elif a["conda"]:
        python_spec = f"python={a['conda_python']}" if a["conda_python"] else "python"
        channels = [part for channel in a["conda_channels"] for part in ("-c", channel)]
        create = command_as([a["conda"], "create", "--yes", "--quiet", "--prefix", venv,
                             *(["--override-channels", *channels] if channels else []),
                             python_spec, "pip"], runas=runas, seconds=bound)
    else:
        create = command_as([a["python"], "-m", "venv", *(["--without-pip"] if uv_mode else []),
                             venv], runas=runas, seconds=bound)
    sources = [*(["--no-index"] if a["no_index"] else []),
               *(["--index-url", a["index_url"]] if a["index_url"] else []),
               *(["--find-links", a["find_links"]] if a["find_links"] else [])]
    python = posixpath.join(venv, "bin", "python")
    pip_install = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                   *sources]
    if uv_mode:
        uv = posixpath.join(venv, "bin", "uv")
        steps = []
        if create or not call.facts.get("uv", True):
            if a["find_links"]:     # offline: uv's binary straight out of its wheel
                steps.append(command_as([a["python"], "-c", EXTRACT_UV, a["find_links"], uv],
                                        runas=runas, seconds=bound))
            else:
                steps += [command_as([python, "-m", "ensurepip"], runas=runas, seconds=bound),
                          command_as([*pip_install, "uv"], runas=runas, seconds=bound)]
        # pip too, so people can still `%pip install` into the environment
        # UV_NO_CONFIG: exactly the sources above, whatever uv.toml the working
        # directory or the user has (and it need not be readable by the user)
        # and then no file writable by others: uv leaves its .lock in the environment 0666
        steps.append(chain(command_as([uv, "pip", "install", "--quiet", "--python", python,
                                       "--compile-bytecode", *sources, "pip", *reqs],
                                      runas=runas, seconds=bound, env={"UV_NO_CONFIG": "1"}),
                           command_as(["chmod", "-R", "go-w", "--", venv], runas=runas, seconds=bound)))
    else:
        steps = [command_as([*pip_install, *reqs], runas=runas, seconds=bound)]
    changes = {"requirements": list(reqs), "reason": why}
    if create:
        changes["venv"] = {"old": "", "new": venv}
    seed = create and a["bundle"] and not a["conda"]
    what = (f"the environment built here ({Path(a['bundle']).name}: {len(reqs)} requirements)"
            if seed else f"{len(reqs)} requirements")
    if call.test:
        return call.would(f"would {'unpack' if seed else 'pip install'} {what} into {venv} ({why})",
                          changes)
    call.changes.update(changes)
    if seed:
        unpack = command_as(["sh", "-c", SEED, "sh", venv, a["python"]], runas=runas, seconds=bound)
        result = yield Run(unpack, stdin=envbundle.payload(Path(a["bundle"])), check=False)
        if not result.ok:
            return call.command_failed(unpack, result, "unpacking the environment failed")
        create, steps = None, []
    if create:
        yield Run(create)
    for step in steps:
        result = yield Run(step, check=False)
        if not result.ok:
            return call.command_failed(step, result, f"{a['installer']} install failed")
    if wanted is not None:
        yield Put(f"{wanted}\n# {' '.join(reqs)}\n".encode(), posixpath.join(venv, MARKER_NAME))
    return call.done(f"{'unpacked' if seed else 'pip installed'} {what} into {venv} ({why})")
