"""The Jupyter password: where it comes from, and its argon2 hash.

The password never touches hosts.yaml, a command line, a log or the host's disk:
it comes from $JUPYTERFAB_PASSWORD, a 0600 file, or a prompt asked twice, and is
hashed on the controller in Jupyter Server's own format. A password that matches
the hash already deployed keeps that hash (argon2 salts differ on every hash),
so redeploying with the same password changes nothing.
"""

from __future__ import annotations

import getpass
import os
import stat
import sys
import threading
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from jupyterfab.engine.errors import ConfigError
from jupyterfab.engine.shell import Secret

ENV_VAR = "JUPYTERFAB_PASSWORD"
PREFIX = "argon2:"
# The parameters jupyter_server.auth.security.passwd() uses, so the hash is the
# one Jupyter Server itself would make.
_HASHER = PasswordHasher(memory_cost=10240, time_cost=10, parallelism=8)
MIN_LENGTH = 8


class PasswordError(ConfigError):
    pass


def read_password_file(path: str | Path) -> Secret:
    path = Path(path).expanduser()
    try:
        st = path.stat()
    except OSError as exc:
        raise PasswordError(f"cannot read password file {path}: {exc.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PasswordError(f"password file {path} is readable by others "
                            f"(mode {stat.S_IMODE(st.st_mode):04o}): chmod 600 {path}")
    value = path.read_text().rstrip("\r\n")
    return _checked(value, str(path))


def _checked(value: str, origin: str) -> Secret:
    if len(value) < MIN_LENGTH:
        raise PasswordError(f"the password from {origin} is shorter than {MIN_LENGTH} characters")
    return Secret(value)


def prompt_twice() -> Secret:
    if not sys.stdin.isatty():
        raise PasswordError(f"no password given: set {ENV_VAR}, pass --password-file "
                            "(mode 0600), or run from a terminal to be asked")
    first = getpass.getpass("Jupyter password: ")
    second = getpass.getpass("Jupyter password (again): ")
    if first != second:
        raise PasswordError("the two passwords differ")
    return _checked(first, "the prompt")


def from_sources(password_file: str | None = None, *, prompt: bool = True,
                 environ: dict | None = None) -> Secret | None:
    """File beats environment beats prompt; None when none is given and prompt is off."""
    environ = os.environ if environ is None else environ
    if password_file:
        return read_password_file(password_file)
    if environ.get(ENV_VAR):
        return _checked(environ[ENV_VAR], f"${ENV_VAR}")
    return prompt_twice() if prompt else None


def hash_password(password: Secret) -> str:
    return PREFIX + _HASHER.hash(password.reveal())


def matches(hashed: str, password: Secret) -> bool:
    if not hashed.startswith(PREFIX):
        return False
    try:
        return _HASHER.verify(hashed[len(PREFIX):], password.reveal())
    except (VerificationError, InvalidHashError):
        return False


class HashChooser:
    """``choose_hash`` for many hosts at once: argon2 is deliberately slow (~0.15 s of
    CPU), so each distinct deployed hash is checked once, and hosts that need a new
    hash share one."""

    def __init__(self, password: Secret | None, dry_run: bool = False):
        self.password = password
        self.dry_run = dry_run      # a dry run of a host with no hash yet shows DRY_RUN_HASH
        self._checked: dict[str, bool] = {}
        self._new: str | None = None
        self._lock = threading.Lock()

    def __call__(self, deployed: str | None) -> str:
        if self.password is None:
            if self.dry_run and not deployed:
                return DRY_RUN_HASH
            return choose_hash(None, deployed)
        with self._lock:
            if deployed:
                if deployed not in self._checked:
                    self._checked[deployed] = matches(deployed, self.password)
                if self._checked[deployed]:
                    return deployed
            if self._new is None:
                self._new = hash_password(self.password)
            return self._new


# What a dry run shows in the config's diff where the real run writes the new hash: a
# dry run needs no password (nor asks for one) to predict everything else.
DRY_RUN_HASH = "argon2:(the real deploy writes the hash of the password you give it here)"


def choose_hash(password: Secret | None, deployed: str | None) -> str:
    """The hash to deploy: the deployed one if the password (or no password) keeps it."""
    if password is None:
        if deployed:
            return deployed
        raise PasswordError(f"this host has no Jupyter password yet: set {ENV_VAR}, "
                            "pass --password-file (mode 0600), or run from a terminal to be asked")
    if deployed and matches(deployed, password):
        return deployed
    return hash_password(password)
