"""Where a host's Python environment lives, by ``env_provider`` (venv or conda).

One place for the paths, so the deploy, the day-2 tasks and ``invoke verify``
agree: a venv at ``PREFIX/venv``; with conda, the environment ``jupyter`` in the
conda prefix (``CONDA_PREFIX/envs/jupyter``), beside one environment per kernel
template.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .inventory import conda_env_name

SERVER_ENV = "jupyter"      # the conda environment Jupyter Server runs from


def env_dir(v: dict[str, Any]) -> str:
    if v.get("env_provider") == "conda":
        return f"{v['conda_prefix'].rstrip('/')}/envs/{SERVER_ENV}"
    return f"{v['prefix'].rstrip('/')}/venv"


def conda_vars(v: dict[str, Any], python: str) -> dict[str, Any]:
    """What states/jupyter/conda.sls and the environment templates need."""
    prefix = v["conda_prefix"].rstrip("/")
    installer = v["conda_installer"]
    if installer and "://" not in installer:
        installer = str(Path(installer).expanduser().resolve())
    return {
        "conda_prefix": prefix,
        "conda_installer": installer,
        "conda_installer_is_url": "://" in installer,
        "conda_bin": f"{prefix}/bin/conda",
        # the rendered environment.yml files, readable on the host for `conda env update` by hand
        "conda_env_files_dir": f"{v['prefix'].rstrip('/')}/environments",
        # the host's Python version: the wheelhouse is built for it, so the environment
        # pins it (empty: conda chooses)
        "conda_python": python,
        # every environment to apply: the server's first (state ID jupyter_env, as for
        # a venv), then one per kernel template, named after its file
        "conda_envs": [{"id": "jupyter_env", "name": SERVER_ENV, "source": v["conda_environment"],
                        "dir": f"{prefix}/envs/{SERVER_ENV}"}]
        + [{"id": f"conda_env_{conda_env_name(t)}", "name": conda_env_name(t), "source": t,
            "dir": f"{prefix}/envs/{conda_env_name(t)}"} for t in v["conda_kernel_environments"]],
    }
