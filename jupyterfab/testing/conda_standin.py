"""A stand-in for the ``conda`` command, installed by the test-built installer.

NOT conda. The tests (and sandbox hosts) cannot reach conda channels, so this
program implements only the subset of conda that jupyterfab uses, with conda's
command line and output shapes, so the whole provider flow (installer, prefix,
``conda env update``, ``conda env list``, kernels) runs for real on a host:

    conda --version
    conda info --json
    conda env list --json
    conda env update --file FILE (--prefix PATH | --name NAME) [--prune] [--quiet]

An environment is a venv of the host's own Python (copied, so the process runs
from the environment's own ``bin/python``), with a ``conda-meta/`` folder like a
real one. From ``environment.yml`` it honours ``python`` (only the host's
version), ``pip`` and the ``pip:`` list, which it installs with the
environment's pip, so ``PIP_FIND_LINKS``/``PIP_NO_INDEX`` (a wheelhouse) work
as they do under real conda. Any other conda package is refused the way conda
refuses a package no channel has (``PackagesNotFoundError``, exit 1).
``--prune`` is accepted; like real conda it does not remove pip packages.

The installer writes this file to ``PREFIX/bin/conda`` with the shebang pointing
at ``PREFIX/bin/python``; it uses the standard library only (no PyYAML on a
fresh host), hence the small environment.yml reader below.
"""

import json
import os
import re
import subprocess
import sys
import time

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
    section, in_pip, pip_indent = None, False, 0
    for number, raw in enumerate(lines, 1):
        where = f"{path}:{number}"
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        line = raw.strip()
        if indent == 0:
            in_pip = False
            key, sep, value = line.partition(":")
            if not sep:
                raise CondaError(f"{where}: expected `key:`, got {line!r}")
            key, value = key.strip(), _scalar(value, where)
            if key == "name":
                env["name"] = value
                section = None
            elif key in ("channels", "dependencies"):
                section = key
                if value.startswith("[") and value.endswith("]"):     # [a, b]
                    env[key] += [_scalar(v, where) for v in value[1:-1].split(",") if v.strip()]
                elif value:
                    raise CondaError(f"{where}: {key} must be a list")
            elif key in ("prefix", "variables"):
                section = None      # real conda keys this stand-in has no use for
            else:
                raise CondaError(f"{where}: unknown key {key!r} in an environment file")
            continue
        if not line.startswith("-"):
            raise CondaError(f"{where}: expected a `- item` list entry, got {line!r}")
        item = line[1:].strip()
        if in_pip and indent > pip_indent:
            env["pip"].append(_scalar(item, where))
            continue
        in_pip = False
        if section == "channels":
            env["channels"].append(_scalar(item, where))
        elif section == "dependencies":
            if re.fullmatch(r"pip\s*:\s*(\[\s*\])?", item):
                in_pip, pip_indent = True, indent
            else:
                env["dependencies"].append(_scalar(item, where))
        else:
            raise CondaError(f"{where}: a list entry outside channels/dependencies")
    return env


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
        shown = "\n".join(f"  - {m}" for m in missing)
        chans = "\n".join(f"  - {c}" for c in (channels or ["defaults"]))
        raise CondaError(
            "PackagesNotFoundError: The following packages are not available from current "
            f"channels:\n\n{shown}\n\nCurrent channels:\n\n{chans}\n\n"
            "(jupyterfab's conda stand-in provides only python " + here + " and pip; "
            "everything else must come through `pip:`)")


def _history(env, line):
    meta = os.path.join(env, "conda-meta")
    os.makedirs(meta, exist_ok=True)
    with open(os.path.join(meta, "history"), "a", encoding="utf-8") as f:
        f.write(f"==> {time.strftime('%Y-%m-%d %H:%M:%S')} <==\n# cmd: {line}\n")


def env_update(path, file, quiet):
    spec = read_environment_yml(file)
    check_conda_packages(spec["dependencies"], spec["channels"])
    python = os.path.join(path, "bin", "python")
    if not os.path.exists(python):
        if not quiet:
            print(f"Creating environment {path}", flush=True)
        # --copies: the environment has its own interpreter file, as a conda one does;
        # pip only when the file asks for it (as the package pip, or a pip: list)
        wants_pip = spec["pip"] or "pip" in map(_package_name, spec["dependencies"])
        subprocess.run([os.path.join(PREFIX, "bin", "python"), "-m", "venv", "--copies",
                        *([] if wants_pip else ["--without-pip"]), path], check=True)
    if spec["pip"]:
        if not quiet:
            print("Installing pip dependencies: ...working...", flush=True)
        done = subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check",
                               "--no-input", *(["--quiet"] if quiet else []), *spec["pip"]])
        if done.returncode != 0:
            raise CondaError("Pip subprocess error: pip install exited "
                             f"{done.returncode} (see above)\nfailed\n\nCondaEnvException: "
                             "Pip failed")
    _history(path, " ".join(["conda", *sys.argv[1:]]))
    if not quiet:
        print(f"#\n# To activate this environment, use\n#\n#     $ conda activate {path}\n#")


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
        args = argv[2:]
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
            prefix = PREFIX if name == "base" else os.path.join(envs_dir(), name)
        env_update(os.path.abspath(prefix), file, quiet)
        return 0
    raise CondaError(f"jupyterfab's conda stand-in does not implement `conda {' '.join(argv)}` "
                     "(it knows: --version, info --json, env list --json, env update)")


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except CondaError as exc:
        print(f"\n{exc}\n", file=sys.stderr)
        sys.exit(1)
