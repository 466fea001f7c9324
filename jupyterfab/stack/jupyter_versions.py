"""The JupyterLab and Jupyter Server installed in an environment: the one probe and
its one parser, asked by the deploy's host probe, ``fab status``, ``fab upgrade`` and
its probe of the live environment."""

from __future__ import annotations

from dataclasses import dataclass

from jupyterfab.engine.facts import Fact, key_values, need_rc
from jupyterfab.engine.shell import Command, cmd

# $1 an environment: `jupyterlab=<version>` and `jupyter_server=<version>`, read from
# their dist-info folders (no Python started); a package that is not there says nothing.
VERSIONS_SCRIPT = r"""
for d in "$1"/lib/python3*/site-packages/jupyterlab-*.dist-info \
         "$1"/lib/python3*/site-packages/jupyter_server-*.dist-info; do
    [ -d "$d" ] && { n="${d##*/}"; n="${n%.dist-info}"; echo "${n%%-*}=${n#*-}"; }; done; true
"""
PACKAGES = ("jupyterlab", "jupyter_server")


def parse_versions(stdout: str) -> dict[str, str | None]:
    """What ``VERSIONS_SCRIPT`` printed, among other ``key=value`` lines (pure):
    each package's version, None when it is not installed."""
    values = key_values(stdout)
    return {package: values.get(package) or None for package in PACKAGES}


@dataclass(frozen=True)
class InstalledVersions(Fact):
    """The JupyterLab and Jupyter Server versions installed in ``env``."""

    env: str

    def command(self) -> Command:
        return cmd("sh", "-c", VERSIONS_SCRIPT, "sh", self.env)

    def parse(self, stdout: str, rc: int) -> dict[str, str | None]:
        need_rc(self, rc, (0,), stdout)
        return parse_versions(stdout)

    def describe(self) -> str:
        return f"JupyterLab's version in {self.env}"
