"""conda.installed, conda.env_present, conda.kernels: the conda environment provider.

``conda.installed`` puts Miniforge or Miniconda into a prefix: the installer is
downloaded on the host (curl or wget) or uploaded from this machine, its sha256
is checked before it runs (a local file already here, before anything is sent),
and it runs as ``bash INSTALLER -b -p PREFIX``. A marker in the prefix records the
installer's sha256, so the same installer again is a no-op. A prefix holding
conda from another installer (or anything jupyterfab did not install) is
refused, never reinstalled over: the environments in it would be lost, and the
installers themselves refuse an existing prefix. To move to a new installer,
point the prefix somewhere new; the environments are rebuilt there from their
environment.yml. An install cut short (a sentinel beside the prefix says one
was running) is wiped and redone.

``conda.env_present`` runs ``conda env update --file FILE --prefix ENV --prune``
when what decides the environment changed: the environment.yml on the host
(written by a ``file.managed`` this state requires or watches), the pip sources
and the wheelhouse manifest. A marker in the environment holds their hash, so a
failed update is retried on the next deploy rather than forgotten. pip
dependencies honour ``find_links``/``no_index``/``index_url`` through pip's own
environment variables, as pip does when conda runs it.

``conda.kernels`` makes every conda environment a Jupyter kernel. When the
server's environment has nb_conda_kernels (from conda-forge), that package lists
the environments live and this state only removes kernelspecs it wrote earlier.
Without it, this state does what nb_conda_kernels does, at deploy time: one
kernelspec (``conda-env-NAME-py``, "Python [conda env:NAME]") for every
environment ``conda env list --json`` names that has ipykernel, in the server
environment's ``share/jupyter/kernels``; stale ones it wrote are removed.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyterfab.engine.facts import Fact, FactError
from jupyterfab.engine.facts.commands import command_as
from jupyterfab.engine.facts.files import MANIFEST_NAME, FileContent, PathExists, Stat
from jupyterfab.engine.shell import Command, chain, cmd
from jupyterfab.engine.states.base import Arg, ArgError, Call, Put, Run, abs_path, boolean, state, string, url

MARKER_NAME = ".jupyterfab-conda"          # in the prefix: the installer's sha256
ENV_MARKER_NAME = ".jupyterfab-conda-env"  # in an environment: hash of what decided it


# --- arguments -------------------------------------------------------------------------

def is_url(source: str) -> bool:
    return source.startswith(("https://", "http://"))


def installer_source(value: Any) -> str:
    source = string(value).strip()
    if not source or "\n" in source:
        raise ArgError("give the installer's https URL or a path on this machine")
    if "://" in source and not is_url(source):
        raise ArgError(f"{source!r}: only http(s) URLs or local paths")
    return source


def sha256_hex(value: Any) -> str:
    digest = string(value).strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ArgError(f"{value!r} is not a sha256 (64 hex digits)")
    return digest


def sentinel_path(prefix: str) -> str:
    """Beside the prefix, not in it: the installer refuses a prefix that exists."""
    return prefix + ".jupyterfab-installing"


def installer_temp_path(prefix: str, sha256: str) -> str:
    return posixpath.join(posixpath.dirname(prefix), f".conda-installer-{sha256[:12]}.sh")


# --- conda.installed ----------------------------------------------------------------

def _installed_prepare(name: str, args: dict, ctx) -> Path | None:
    """A local installer is checked here, before anything reaches the host."""
    source = args["source"]
    if is_url(source):
        return None
    path = Path(source).expanduser()
    if not path.is_file():
        raise ValueError(f"conda installer {path} is not a file on this machine")
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    if digest != args["sha256"]:
        raise ValueError(f"conda installer {path} has sha256 {digest}, but the inventory "
                         f"expects {args['sha256']} (conda_installer_sha256): refusing to use "
                         "it; nothing was sent to the host")
    return path


def _installed_facts(name: str, args: dict, ctx) -> dict:
    return {"prefix": Stat(name), "marker": FileContent(posixpath.join(name, MARKER_NAME)),
            "conda_meta": PathExists(posixpath.join(name, "conda-meta")),
            "interrupted": PathExists(sentinel_path(name))}


# $1 sha256, $2 installer path, $3 prefix, $4 sentinel, $5 url ("" when uploaded),
# $6 "wipe" to remove a prefix an interrupted install left behind.
# The sha256 is checked before the installer runs; a mismatch removes the download.
INSTALL_SCRIPT = r"""
set -e
sha=$1 installer=$2 prefix=$3 sentinel=$4 url=$5
printf '%s\n' "$sha" > "$sentinel"
if [ -n "$url" ]; then
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --retry 3 -o "$installer" -- "$url"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -O "$installer" -- "$url"
    else
        echo "neither curl nor wget is installed to download $url" >&2; exit 127
    fi
fi
got=$(sha256sum < "$installer" | cut -c1-64)
if [ "$got" != "$sha" ]; then
    rm -f -- "$installer" "$sentinel"
    echo "the conda installer's sha256 is $got, expected $sha: not running it" >&2
    exit 3
fi
if [ "$6" = wipe ]; then rm -rf -- "$prefix"; fi
bash "$installer" -b -p "$prefix"
printf '%s\n%s\n' "$sha" "${url:-uploaded}" > "$prefix/MARKER"
rm -f -- "$installer" "$sentinel"
""".replace("MARKER", MARKER_NAME)


@state("conda.installed", name=abs_path, prepare=_installed_prepare, facts=_installed_facts,
       args={"source": Arg(installer_source, required=True),
             "sha256": Arg(sha256_hex, required=True)})
def installed(call: Call):
    """Install conda (Miniforge) into a prefix from an installer checked by its sha256;
    the same installer again changes nothing.

    name
        The conda prefix, an absolute path.
    source
        The installer: an http(s) URL downloaded on the host, or a path on this machine uploaded to it.
    sha256
        The installer's sha256; a different file is refused before it runs.
    """
    prefix, want, source = call.name, call.args["sha256"], call.args["source"]
    have = (call.facts["marker"] or "").split("\n", 1)[0].strip()
    exists, interrupted = call.facts["prefix"] is not None, call.facts["interrupted"]
    if exists and not interrupted:
        if have == want and call.facts["conda_meta"]:
            return call.done(f"{prefix} holds conda from the installer with sha256 {want[:12]}… "
                             "(marker matches): not reinstalling")
        if have == want:
            return call.fail(f"{prefix} was installed by jupyterfab but has no conda-meta: the "
                             "installation is damaged; remove it and deploy again")
        if have:
            return call.fail(f"{prefix} holds conda from another installer (sha256 {have[:12]}…, "
                             f"not {want[:12]}…): jupyterfab does not reinstall over it, its "
                             "environments would be lost. Set conda_prefix to a new path to "
                             f"install there (environments are rebuilt), or remove {prefix}")
        return call.fail(f"{prefix} exists but jupyterfab did not install conda there (no "
                         f"{MARKER_NAME}): refusing to install over it; remove it or set "
                         "another conda_prefix")
    how = "download" if is_url(source) else "upload"
    why = "an earlier install was interrupted" if exists else "no conda yet"
    changes = {"conda": {"old": "", "new": prefix}, "installer": source, "sha256": want,
               "reason": why}
    if call.test:
        return call.would(f"would {how} the installer, check its sha256 and install conda into "
                          f"{prefix} ({why})", changes)
    call.changes.update(changes)
    installer = installer_temp_path(prefix, want)
    yield Run(cmd("mkdir", "-p", "--", posixpath.dirname(prefix)))
    if call.prepared is not None:
        yield Put(call.prepared.read_bytes(), installer)
    install = cmd("sh", "-c", INSTALL_SCRIPT, "sh", want, installer, prefix,
                  sentinel_path(prefix), source if is_url(source) else "",
                  "wipe" if exists else "")
    result = yield Run(install, check=False)
    if not result.ok:
        call.changes.clear()
        if result.rc == 3:
            return call.fail(result.stderr.strip().splitlines()[-1])
        return call.command_failed(install, result, "installing conda failed")
    return call.done(f"installed conda into {prefix} from the installer with sha256 "
                     f"{want[:12]}… ({how}ed)")


# --- conda.env_present ------------------------------------------------------------------

def pip_environment(args: dict) -> dict[str, str]:
    """pip reads these when conda runs it for an environment's `pip:` list."""
    env = {"PIP_FIND_LINKS": args["find_links"], "PIP_NO_INDEX": "1" if args["no_index"] else "",
           "PIP_INDEX_URL": args["index_url"]}
    return {k: v for k, v in env.items() if v}


def _env_facts(name: str, args: dict, ctx) -> dict:
    facts = {"marker": FileContent(posixpath.join(name, ENV_MARKER_NAME)),
             "conda_meta": PathExists(posixpath.join(name, "conda-meta")),
             "file": Stat(args["file"], checksum=True)}
    if args["find_links"]:
        facts["wheelhouse"] = Stat(posixpath.join(args["find_links"], MANIFEST_NAME),
                                   checksum=True)
    return facts


def env_hash(file_sha256: str | None, args: dict, wheelhouse_sha256: str | None) -> str:
    decided_by = {"file": file_sha256, "prune": args["prune"], "pip": pip_environment(args),
                  "wheelhouse_manifest": wheelhouse_sha256}
    return hashlib.sha256(json.dumps(decided_by, sort_keys=True).encode()).hexdigest()


@state("conda.env_present", name=abs_path, facts=_env_facts, args={
    "conda": Arg(abs_path, required=True),
    "file": Arg(abs_path, required=True),
    "prune": Arg(boolean, default=True),
    "find_links": Arg(abs_path),
    "no_index": Arg(boolean, default=False),
    "index_url": Arg(url),
})
def env_present(call: Call):
    """Make a conda environment match an environment file (``conda env update --prune``),
    only when the file or the environment changed.

    name
        The environment's prefix, an absolute path.
    conda
        The conda executable to run.
    file
        The environment file on the host (written by a file.managed it requires or watches).
    prune
        Remove packages the file no longer lists.
    find_links
        A wheelhouse folder on the host for the file's pip dependencies.
    no_index
        pip installs from ``find_links`` only, never from an index.
    index_url
        The index pip uses instead of PyPI.
    """
    env, file = call.name, call.args["file"]
    info = call.facts["file"]
    wheelhouse = call.facts.get("wheelhouse")
    marker = (call.facts["marker"] or "").split("\n", 1)[0].strip()
    # In a dry run the file.managed before this one has not written the file yet:
    # its would-be change is the news.
    file_would_change = call.test and any(
        r.function == "file.managed" and r.name == file and r.ok is None and "diff" in r.changes
        for r in call.requisite_results)
    if info is None and not call.test:
        return call.fail(f"{file} does not exist on the host (write it with file.managed)")
    wanted = env_hash(info.sha256 if info else None, call.args,
                      wheelhouse.sha256 if wheelhouse else None)
    if not file_would_change and info is not None and call.facts["conda_meta"] \
            and marker == wanted:
        return call.done(f"{env} is up to date with {file} (marker matches)")
    changed = posixpath.basename(file) + ("" if file_would_change or not wheelhouse
                                          else " or the wheelhouse")
    why = ("no environment yet" if not call.facts["conda_meta"]
           else f"{changed} changed" if file_would_change or marker else "no marker yet")
    update = command_as([call.args["conda"], "env", "update", "--quiet", "--file", file,
                         "--prefix", env, *(["--prune"] if call.args["prune"] else [])],
                        env=pip_environment(call.args))
    changes = {"environment": env, "file": file, "reason": why}
    if call.test:
        return call.would(f"would run `conda env update` for {env} ({why})", changes)
    result = yield Run(update, check=False)
    if not result.ok:
        return call.command_failed(update, result, "conda env update failed")
    yield Put(f"{wanted}\n".encode(), posixpath.join(env, ENV_MARKER_NAME))
    return call.done(f"updated {env} from {file} ({why})", changes)


# --- conda.kernels ----------------------------------------------------------------------

# $1 conda, $2 base prefix's python, $3 the server environment. Prints JSON: the
# environments, which have ipykernel, whether the server has nb_conda_kernels,
# and the kernelspecs named conda-* in the server environment.
KERNELS_PROBE = r"""
import glob, json, os, subprocess, sys
conda, server = sys.argv[1], sys.argv[2]
def has(env, module):
    return bool(glob.glob(os.path.join(env, "lib", "python3*", "site-packages", module)))
listed = json.loads(subprocess.run([conda, "env", "list", "--json"], check=True,
                                   capture_output=True, text=True).stdout)["envs"]
specs = {}
for path in sorted(glob.glob(os.path.join(server, "share", "jupyter", "kernels", "conda-*"))):
    try:
        with open(os.path.join(path, "kernel.json")) as f:
            specs[os.path.basename(path)] = json.load(f)
    except (OSError, ValueError):
        specs[os.path.basename(path)] = None
print(json.dumps({"conda": True, "envs": {e: has(e, "ipykernel") for e in listed},
                  "nb_conda_kernels": has(server, "nb_conda_kernels"), "specs": specs}))
"""
KERNELS_SCRIPT = ('if [ -x "$1" ] && [ -x "$2" ]; then exec "$2" -c "$4" "$1" "$3"; '
                  'else echo \'{"conda": false}\'; fi')


@dataclass(frozen=True)
class CondaKernelsState:
    installed: bool
    envs: dict[str, bool]                 # environment path -> has ipykernel
    nb_conda_kernels: bool
    specs: dict[str, dict | None]         # kernelspec name -> kernel.json (None: unreadable)


@dataclass(frozen=True)
class CondaKernels(Fact):
    conda: str
    server_env: str

    def command(self) -> Command:
        python = posixpath.join(posixpath.dirname(self.conda), "python")
        return cmd("sh", "-c", KERNELS_SCRIPT, "sh", self.conda, python, self.server_env,
                   KERNELS_PROBE)

    def parse(self, stdout: str, rc: int) -> CondaKernelsState:
        try:
            data = json.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else None
        except ValueError:
            data = None
        if rc != 0 or not isinstance(data, dict):
            raise FactError(f"listing conda environments with {self.conda} failed (exit {rc})")
        if not data.get("conda"):
            return CondaKernelsState(False, {}, False, {})
        return CondaKernelsState(True, dict(data["envs"]), bool(data["nb_conda_kernels"]),
                                 dict(data["specs"]))

    def describe(self) -> str:
        return f"conda environments and kernels of {self.server_env}"


def kernel_name(env: str, root: str) -> tuple[str, str]:
    """(kernelspec name, display name), the way nb_conda_kernels names them."""
    if env.rstrip("/") == root.rstrip("/"):
        return "conda-root-py", "Python [conda env:root]"
    if posixpath.dirname(env.rstrip("/")) == posixpath.join(root, "envs"):
        label = posixpath.basename(env.rstrip("/"))
    else:
        label = env.strip("/")
    return (f"conda-env-{re.sub(r'[^A-Za-z0-9._-]+', '-', label)}-py",
            f"Python [conda env:{label}]")


def kernel_spec(env: str, display_name: str) -> dict:
    return {"argv": [posixpath.join(env, "bin", "python"), "-m", "ipykernel_launcher",
                     "-f", "{connection_file}"],
            "display_name": display_name, "language": "python",
            "metadata": {"debugger": True, "jupyterfab": {"conda_env": env}}}


def wanted_specs(facts: CondaKernelsState, root: str) -> dict[str, dict]:
    if facts.nb_conda_kernels:
        return {}
    specs = {}
    for env, has_ipykernel in sorted(facts.envs.items()):
        if has_ipykernel:
            name, display = kernel_name(env, root)
            specs[name] = kernel_spec(env, display)
    return specs


def ours(spec: dict | None) -> bool:
    return isinstance(spec, dict) and "jupyterfab" in (spec.get("metadata") or {})


@state("conda.kernels", name=abs_path,
       facts=lambda name, args, ctx: {"kernels": CondaKernels(args["conda"], name)},
       args={"conda": Arg(abs_path, required=True)})
def kernels(call: Call):
    """Register one Jupyter kernel per conda environment that has ipykernel, and remove
    the kernels of environments that are gone.

    name
        The kernelspec folder (``share/jupyter/kernels`` of the server's environment).
    conda
        The conda executable whose environments are listed.
    """
    facts: CondaKernelsState = call.facts["kernels"]
    root = posixpath.dirname(posixpath.dirname(call.args["conda"]))
    if not facts.installed:
        if call.test:
            return call.would("conda is not installed yet: would register a kernel for every "
                              "conda environment with ipykernel once it is",
                              {"kernels": "after conda is installed"})
        return call.fail(f"{call.args['conda']} is not installed")
    wanted = wanted_specs(facts, root)
    write = {n: s for n, s in wanted.items() if facts.specs.get(n) != s}
    remove = sorted(n for n, s in facts.specs.items() if n not in wanted and ours(s))
    clash = sorted(n for n in write if n in facts.specs and not ours(facts.specs[n]))
    if clash:
        return call.fail(f"kernelspecs {', '.join(clash)} exist and were not written by "
                         "jupyterfab: not replacing them")
    how = ("nb_conda_kernels in the server environment lists them itself"
           if facts.nb_conda_kernels else f"{len(wanted)} with ipykernel have a kernelspec")
    if not write and not remove:
        return call.done(f"every conda environment is a kernel ({how})")
    changes = {}
    if write:
        changes["kernels"] = {n: wanted[n]["display_name"] for n in sorted(write)}
    if remove:
        changes["removed"] = remove
    if call.test:
        return call.would(f"would update kernelspecs ({how})", changes)
    kernels_dir = posixpath.join(call.name, "share", "jupyter", "kernels")
    yield Run(cmd("mkdir", "-p", "--", kernels_dir))
    steps = []
    for name in sorted(write):
        tmp = posixpath.join(kernels_dir, f".{name}.json.tmp")
        yield Put((json.dumps(write[name], indent=1) + "\n").encode(), tmp)
        target = posixpath.join(kernels_dir, name)
        steps += [cmd("mkdir", "-p", "--", target), cmd("chmod", "0644", "--", tmp),
                  cmd("mv", "-f", "--", tmp, posixpath.join(target, "kernel.json"))]
    steps += [cmd("rm", "-rf", "--", posixpath.join(kernels_dir, n)) for n in remove]
    yield Run(chain(*steps))
    return call.done(f"updated kernelspecs ({how})", changes)
