"""A stand-in for the ``conda`` command, installed by the test-built installer.

NOT conda. The tests (and sandbox hosts) cannot reach conda channels, so this
program implements only the subset of conda that jupyterfab uses, with conda's
command line and output shapes, so the whole provider flow (installer, prefix,
``conda env update``, ``conda env list``, kernels) runs for real on a host:

    conda --version
    conda info --json
    conda env list --json
    conda env update --file FILE (--prefix PATH | --name NAME) [--prune] [--quiet]
    conda create --yes (--prefix PATH | --name NAME) [--override-channels] [-c CHANNEL]... python[=X.Y] pip
    conda install [--yes] [--prefix PATH | --name NAME] [--override-channels] [-c CHANNEL]... PACKAGE[=VERSION]...

An environment is a venv of the host's own Python (copied, so the process runs
from the environment's own ``bin/python``), with a ``conda-meta/`` folder like a
real one. From ``environment.yml`` it honours ``python`` (only the host's
version), ``pip`` and the ``pip:`` list, which it installs with the
environment's pip, so ``PIP_FIND_LINKS``/``PIP_NO_INDEX`` (a wheelhouse) work
as they do under real conda. Any other conda package is refused the way conda
refuses a package no channel has (``PackagesNotFoundError``, exit 1).
``--prune`` is accepted; like real conda it does not remove pip packages.

``conda install`` is real channel work, over HTTP: it reads the channels (``-c``,
else ``channels:`` of ``$CONDARC``, ``~/.condarc`` and ``PREFIX/.condarc``), fetches
each one's ``linux-64`` and ``noarch`` ``repodata.json``, picks the newest
``.tar.bz2`` build that matches (and, by name, its dependencies), checks its
sha256, unpacks it into the environment (a ``noarch: python`` package's
``site-packages/`` into the environment's own) and records it in
``conda-meta/NAME-VERSION-BUILD.json``, as conda does. There is no solver: the
newest build of each name wins, and python and pip count as present.

The installer writes this file to ``PREFIX/bin/conda`` with the shebang pointing
at ``PREFIX/bin/python``; it uses the standard library only (no PyYAML on a
fresh host), hence the small environment.yml reader below.
"""

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request

VERSION = "0.1+jupyterfab.standin"
PREFIX = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALLOWED_CONDA_PACKAGES = ("python", "pip")


class CondaError(Exception):
    """Printed like conda prints its errors; exit code 1. (Not under jupyterfab's error root:
    this file runs alone, as a fake ``conda`` on a host, with no jupyterfab to import.)"""


# --- environment.yml (the subset conda documents for it) -----------------------------

def _scalar(text, where):
    text = text.strip()
    if text.startswith(('"', "'")):
        quote = text[0]
        end = text.rfind(quote)
        if end <= 0:
            raise CondaError(f"{where}: unterminated quoted string {text!r}")
        inner = text[1:end]
        return json.loads(f'"{inner}"') if quote == '"' else inner.replace("''", "'")
    return re.sub(r"\s+#.*$", "", text).strip()


def read_environment_yml(path):
    """{'name': str|None, 'channels': [...], 'dependencies': [...], 'pip': [...]}"""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise CondaError(f"EnvironmentFileNotFound: '{path}' file not found ({exc.strerror})") from None
    env = {"name": None, "channels": [], "dependencies": [], "pip": []}
    # pip_indent: the indent of the `- pip:` entry while its own list is being read
    section, pip_indent = None, None
    for number, raw in enumerate(lines, 1):
        where = f"{path}:{number}"
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        if indent == 0:
            section, pip_indent = _environment_key(env, raw.strip(), where), None
        else:
            pip_indent = _environment_entry(env, section, raw.strip(), indent, pip_indent, where)
    return env


def _environment_key(env, line, where):
    """A top-level `key: value` into ``env``; the section whose list may follow (or None)."""
    key, sep, value = line.partition(":")
    if not sep:
        raise CondaError(f"{where}: expected `key:`, got {line!r}")
    key, value = key.strip(), _scalar(value, where)
    if key == "name":
        env["name"] = value
        return None
    if key in ("channels", "dependencies"):
        if value.startswith("[") and value.endswith("]"):     # [a, b]
            env[key] += [_scalar(v, where) for v in value[1:-1].split(",") if v.strip()]
        elif value:
            raise CondaError(f"{where}: {key} must be a list")
        return key
    if key in ("prefix", "variables"):
        return None         # real conda keys this stand-in has no use for
    raise CondaError(f"{where}: unknown key {key!r} in an environment file")


def _environment_entry(env, section, line, indent, pip_indent, where):
    """A `- item` of ``section`` (or of the pip list under it) into ``env``; the pip list's
    indent when the entry opens one or is in it, else None."""
    if not line.startswith("-"):
        raise CondaError(f"{where}: expected a `- item` list entry, got {line!r}")
    item = line[1:].strip()
    if pip_indent is not None and indent > pip_indent:
        env["pip"].append(_scalar(item, where))
        return pip_indent
    if section == "channels":
        env["channels"].append(_scalar(item, where))
    elif section == "dependencies":
        if re.fullmatch(r"pip\s*:\s*(\[\s*\])?", item):
            return indent
        env["dependencies"].append(_scalar(item, where))
    else:
        raise CondaError(f"{where}: a list entry outside channels/dependencies")
    return None


# --- environments -------------------------------------------------------------------

def envs_dir():
    return os.path.join(PREFIX, "envs")


def list_envs():
    envs = [PREFIX]
    if os.path.isdir(envs_dir()):
        for name in sorted(os.listdir(envs_dir())):
            path = os.path.join(envs_dir(), name)
            if os.path.isdir(os.path.join(path, "conda-meta")):
                envs.append(path)
    return envs


def _package_name(spec):
    return re.split(r"[\s=<>!~\[]", spec.strip(), maxsplit=1)[0].lower()


def _env_path(name):
    return PREFIX if name == "base" else os.path.join(envs_dir(), name)


def _make_env(path, wants_pip, quiet):
    """A venv of the host's Python, --copies: the environment has its own interpreter
    file, as a conda one does; pip only when asked for."""
    if not quiet:
        print(f"Creating environment {path}", flush=True)
    subprocess.run([os.path.join(PREFIX, "bin", "python"), "-m", "venv", "--copies",
                    *([] if wants_pip else ["--without-pip"]), path], check=True)


def _not_found(missing, channel_lines, note=""):
    shown = "\n".join(f"  - {m}" for m in missing)
    return CondaError("PackagesNotFoundError: The following packages are not available from current "
                      f"channels:\n\n{shown}\n\nCurrent channels:\n\n{channel_lines}\n{note}")


def check_conda_packages(deps, channels):
    """Only what this stand-in can provide: python (the host's) and pip."""
    here = ".".join(map(str, sys.version_info[:3]))
    missing = []
    for spec in deps:
        name = _package_name(spec)
        if name not in ALLOWED_CONDA_PACKAGES:
            missing.append(spec)
        elif name == "python":
            m = re.fullmatch(r"python\s*={1,2}\s*([0-9.]+)\*?", spec.strip().replace(".*", ""))
            if m and not (here + ".").startswith(m.group(1).rstrip(".") + "."):
                missing.append(spec)
            elif not m and spec.strip() != "python":
                missing.append(spec)
    if missing:
        raise _not_found(missing, "\n".join(f"  - {c}" for c in (channels or ["defaults"])),
                         f"\n(jupyterfab's conda stand-in provides only python {here} and pip; "
                         "everything else must come through `pip:`)")


def _history(env, argv):
    """Like conda: the command line with conda's own path (IPython's %conda reads it)."""
    meta = os.path.join(env, "conda-meta")
    os.makedirs(meta, exist_ok=True)
    line = " ".join([os.path.join(PREFIX, "bin", "conda"), *argv])
    with open(os.path.join(meta, "history"), "a", encoding="utf-8") as f:
        f.write(f"==> {time.strftime('%Y-%m-%d %H:%M:%S')} <==\n# cmd: {line}\n")


def env_update(path, file, quiet):
    spec = read_environment_yml(file)
    check_conda_packages(spec["dependencies"], spec["channels"])
    python = os.path.join(path, "bin", "python")
    if not os.path.exists(python):   # pip when the file asks for it: the package pip, or a pip: list
        _make_env(path, spec["pip"] or "pip" in map(_package_name, spec["dependencies"]), quiet)
    if spec["pip"]:
        if not quiet:
            print("Installing pip dependencies: ...working...", flush=True)
        done = subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check",
                               "--no-input", *(["--quiet"] if quiet else []), *spec["pip"]])
        if done.returncode != 0:
            raise CondaError("Pip subprocess error: pip install exited "
                             f"{done.returncode} (see above)\nfailed\n\nCondaEnvException: "
                             "Pip failed")
    _history(path, sys.argv[1:])
    if not quiet:
        print(f"#\n# To activate this environment, use\n#\n#     $ conda activate {path}\n#")


def create(path, specs, quiet):
    """conda create: an environment of the host's Python (and pip, when asked)."""
    check_conda_packages(specs, None)
    if os.path.exists(path):
        shutil.rmtree(path)     # conda create --yes replaces an existing environment
    _make_env(path, "pip" in map(_package_name, specs), quiet)
    _history(path, sys.argv[1:])


# --- channels and conda install ----------------------------------------------------

SUBDIRS = ("linux-64", "noarch")


def _condarc_channels(path):
    """``channels:`` of a condarc (a block list; the rest of the file is not read)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    channels, inside = [], False
    for raw in lines:
        line = raw.split(" #", 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not raw.startswith((" ", "-")):
            inside = line.strip() == "channels:"
            continue
        if inside and line.strip().startswith("- "):
            channels.append(_scalar(line.strip()[2:], path))
    return channels


def configured_channels():
    """Highest priority first, as conda merges them: $CONDARC, the user's, the install's."""
    paths = [os.environ.get("CONDARC", ""), os.path.expanduser("~/.condarc"),
             os.path.expanduser("~/.config/conda/.condarc"), os.path.join(PREFIX, ".condarc")]
    found = dict.fromkeys(channel for path in paths if path for channel in _condarc_channels(path))
    return list(found) or ["defaults"]


def channel_url(channel):
    return channel.rstrip("/") if "://" in channel else f"https://conda.anaconda.org/{channel}"


def _fetch(url):
    with urllib.request.urlopen(url, timeout=60) as answer:
        return answer.read()


def channel_index(channels):
    """name -> [(channel, subdir, filename, record)] from every channel's repodata."""
    index = {}
    for channel in channels:
        base = channel_url(channel)
        for subdir in SUBDIRS:
            try:
                data = json.loads(_fetch(f"{base}/{subdir}/repodata.json"))
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    continue
                raise CondaError(f"CondaHTTPError: HTTP {exc.code} for url <{base}/{subdir}/"
                                 "repodata.json>") from None
            except (OSError, ValueError) as exc:
                raise CondaError(f"CondaHTTPError: could not read <{base}/{subdir}/repodata.json>"
                                 f" ({exc})") from None
            for filename, record in sorted(data.get("packages", {}).items()):
                index.setdefault(record["name"].lower(), []).append((channel, subdir, filename, record))
    return index


def _version_key(version):
    return [(0, int(p)) if p.isdigit() else (-1, p) for p in re.split(r"[._-]", version)]


def _matches(spec, record):
    m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*(?:(==?)\s*([^\s=]+?)(\*)?)?\s*", spec)
    if not m:
        raise CondaError(f"InvalidMatchSpec: Invalid spec '{spec}' (this stand-in reads NAME or "
                         "NAME=VERSION)")
    name, _, version, star = m.groups()
    if record["name"].lower() != name.lower():
        return False
    if version is None:
        return True
    if star or spec.count("=") == 1:       # conda's name=1.2 means 1.2.*
        return record["version"] == version or record["version"].startswith(version.rstrip(".") + ".")
    return record["version"] == version


def resolve(specs, index, channels):
    """The newest match of every spec and, by name, of what it depends on."""
    chosen, missing, todo = {}, [], list(specs)
    while todo:
        spec = todo.pop(0)
        name = _package_name(spec)
        if name in ALLOWED_CONDA_PACKAGES or name in chosen:
            continue
        candidates = [c for c in index.get(name, []) if _matches(spec, c[3])]
        if not candidates:
            missing.append(spec)
            continue
        best = max(candidates, key=lambda c: (_version_key(c[3]["version"]), c[3].get("build_number", 0)))
        chosen[name] = best
        todo += [d.split()[0] for d in best[3].get("depends", [])]
    if missing:
        raise _not_found(missing, "\n".join(f"  - {channel_url(c)}/linux-64\n  - {channel_url(c)}/noarch"
                                            for c in channels))
    return list(chosen.values())


def installed_records(env):
    meta = os.path.join(env, "conda-meta")
    records = {}
    for name in os.listdir(meta) if os.path.isdir(meta) else []:
        if name.endswith(".json"):
            with open(os.path.join(meta, name), encoding="utf-8") as f:
                record = json.load(f)
            records[record["name"].lower()] = record
    return records


def _site_packages(env):
    return os.path.join(env, "lib", "python{}.{}".format(*sys.version_info[:2]), "site-packages")


def _unpack(archive, env, noarch_python):
    """The package's files into the environment; returns their paths (relative)."""
    files = []
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:bz2") as tar:
        for member in tar.getmembers():
            if member.name.startswith("info/") or not (member.isfile() or member.isdir()):
                continue
            path = member.name
            if noarch_python and path.startswith("site-packages/"):
                path = os.path.relpath(os.path.join(_site_packages(env), path[len("site-packages/"):]), env)
            elif noarch_python and path.startswith("python-scripts/"):
                path = os.path.join("bin", path[len("python-scripts/"):])
            target = os.path.normpath(os.path.join(env, path))
            if not target.startswith(env.rstrip("/") + "/"):
                raise CondaError(f"CondaVerificationError: {member.name} lies outside the environment")
            if member.isdir():
                os.makedirs(target, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with tar.extractfile(member) as src, open(target + ".c~", "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.chmod(target + ".c~", 0o755 if member.mode & 0o111 else 0o644)
            os.replace(target + ".c~", target)
            files.append(path)
    return files


def install(env, specs, channels, quiet):
    if not os.path.isdir(os.path.join(env, "conda-meta")):
        raise CondaError(f"EnvironmentLocationNotFound: Not a conda environment: {env}")
    print("Collecting package metadata (repodata.json): ...working... done", flush=True)
    index = channel_index(channels)
    print("Solving environment: ...working... done", flush=True)
    have = installed_records(env)
    plan = [c for c in resolve(specs, index, channels)
            if have.get(c[3]["name"].lower(), {}).get("version") != c[3]["version"]]
    if not plan:
        print("\n# All requested packages already installed.\n")
        return
    print(f"\n## Package Plan ##\n\n  environment location: {env}\n\n  added / updated specs:")
    for spec in specs:
        print(f"    - {spec}")
    print("\n\nThe following NEW packages will be INSTALLED:\n")
    for channel, subdir, filename, record in plan:
        print(f"  {record['name']:<20} {channel}/{subdir}::{filename[:-len('.tar.bz2')]}")
    print("\n\nDownloading and Extracting Packages: ...working... done", flush=True)
    for channel, subdir, filename, record in plan:
        url = f"{channel_url(channel)}/{subdir}/{filename}"
        archive = _fetch(url)
        digest = hashlib.sha256(archive).hexdigest()
        if record.get("sha256") and digest != record["sha256"]:
            raise CondaError(f"CondaVerificationError: {url} has sha256 {digest}, the channel "
                             f"says {record['sha256']}")
        old = have.get(record["name"].lower())
        for path in (old or {}).get("files", []):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(env, path))
        if old:
            os.remove(os.path.join(env, "conda-meta", "{name}-{version}-{build}.json".format(**old)))
        files = _unpack(archive, env, record.get("noarch") == "python")
        meta = {**record, "channel": channel_url(channel), "subdir": subdir, "fn": filename,
                "url": url, "files": files}
        with open(os.path.join(env, "conda-meta", "{name}-{version}-{build}.json".format(**record)),
                  "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
    _history(env, sys.argv[1:])
    print("Preparing transaction: done\nVerifying transaction: done\nExecuting transaction: done")


# --- command line -------------------------------------------------------------------

def _option(args, *names):
    for name in names:
        if name in args:
            i = args.index(name)
            if i + 1 >= len(args):
                raise CondaError(f"argument {name}: expected one argument")
            value = args[i + 1]
            del args[i:i + 2]
            return value
        for i, a in enumerate(args):
            if a.startswith(name + "="):
                del args[i]
                return a.split("=", 1)[1]
    return None


def main(argv):
    if argv in (["--version"], ["-V"]):
        print(f"conda {VERSION}")
        return 0
    if argv[:1] == ["info"] and "--json" in argv:
        print(json.dumps({"conda_version": VERSION, "root_prefix": PREFIX,
                          "envs": list_envs(), "envs_dirs": [envs_dir()],
                          "platform": "linux-64", "jupyterfab_standin": True,
                          "python_version": ".".join(map(str, sys.version_info[:3])) + ".final.0"},
                         indent=2))
        return 0
    if argv[:2] == ["env", "list"] and "--json" in argv:
        print(json.dumps({"envs": list_envs()}, indent=2))
        return 0
    if argv[:2] == ["env", "update"]:
        return _main_env_update(argv[2:])
    if argv[:1] in (["create"], ["install"]):
        return _main_create_or_install(argv[0], argv[1:])
    raise CondaError(f"jupyterfab's conda stand-in does not implement `conda {' '.join(argv)}` "
                     "(it knows: --version, info --json, env list --json, env update, create, "
                     "install)")


def _main_env_update(args):
    """conda env update [--file F] [--prefix P | --name N] [--prune] [--quiet]"""
    file = _option(args, "--file", "-f") or "environment.yml"
    prefix = _option(args, "--prefix", "-p")
    name = _option(args, "--name", "-n")
    quiet = "--quiet" in args or "-q" in args
    unknown = [a for a in args if a not in ("--prune", "--quiet", "-q")]
    if unknown:
        raise CondaError(f"unrecognized arguments: {' '.join(unknown)}")
    if prefix and name:
        raise CondaError("argument -p/--prefix: not allowed with argument -n/--name")
    if not prefix:
        name = name or read_environment_yml(file)["name"]
        if not name:
            raise CondaError("Unable to determine environment\n\nPlease re-run this "
                             "command with one of the following options:\n\n"
                             "* Provide an environment name via --name or -n\n"
                             "* Re-run this command inside an activated conda environment.")
        prefix = _env_path(name)
    env_update(os.path.abspath(prefix), file, quiet)
    return 0


def _main_create_or_install(command, args):
    """conda create|install [--prefix P | --name N] [--channel C ...] [flags] SPEC..."""
    prefix = _option(args, "--prefix", "-p")
    name = _option(args, "--name", "-n")
    channels = []
    while (channel := _option(args, "--channel", "-c")) is not None:
        channels.append(channel)
    flags = {a for a in args if a.startswith("-")}
    unknown = flags - {"--yes", "-y", "--quiet", "-q", "--override-channels"}
    if unknown:
        raise CondaError(f"unrecognized arguments: {' '.join(sorted(unknown))}")
    if prefix and name:
        raise CondaError("argument -p/--prefix: not allowed with argument -n/--name")
    specs = [a for a in args if not a.startswith("-")]
    if not specs:
        raise CondaError("too few arguments, must supply command line package specs")
    if command == "create" and not (prefix or name):
        raise CondaError("one of the arguments -n/--name -p/--prefix is required")
    env = os.path.abspath(prefix) if prefix else (
        _env_path(name) if name else os.environ.get("CONDA_PREFIX") or PREFIX)
    if "--override-channels" not in flags:
        channels += [c for c in configured_channels() if c not in channels]
    quiet = bool(flags & {"--quiet", "-q"})
    if command == "create":
        create(env, specs, quiet)
    else:
        install(env, specs, channels, quiet)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except CondaError as exc:
        print(f"\n{exc}\n", file=sys.stderr)
        sys.exit(1)
