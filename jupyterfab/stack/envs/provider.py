"""Where a host's Python environment lives, by ``env_provider`` (venv or conda).

One place for the paths, so the deploy, the day-2 tasks and ``invoke verify``
agree: a venv at ``PREFIX/venv``; with conda, the environment ``jupyter`` in the
conda prefix (``CONDA_PREFIX/envs/jupyter``), beside one environment per kernel
template.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jupyterfab.inventory.schema import conda_env_name
from jupyterfab.stack.envs import envlayout

SERVER_ENV = "jupyter"      # the conda environment Jupyter Server runs from


def env_dir(v: dict[str, Any]) -> str:
    if v.get("env_provider") == "conda":
        return f"{v['conda_prefix'].rstrip('/')}/envs/{SERVER_ENV}"
    return envlayout.live_path(v["prefix"])


def conda_vars(v: dict[str, Any], python: str) -> dict[str, Any]:
    """What states/jupyter/conda.sls and the environment templates need."""
    prefix = v["conda_prefix"].rstrip("/")
    files_dir = f"{v['prefix'].rstrip('/')}/environments"
    installer = v["conda_installer"]
    if installer and "://" not in installer:
        installer = str(Path(installer).expanduser().resolve())
    return {
        "conda_prefix": prefix,
        "conda_installer": installer,
        "conda_installer_is_url": "://" in installer,
        "conda_bin": f"{prefix}/bin/conda",
        # the rendered environment.yml files, readable on the host for `conda env update` by hand
        "conda_env_files_dir": files_dir,
        # the host's Python version: the wheelhouse is built for it, so the environment
        # pins it (empty: conda chooses)
        "conda_python": python,
        # every environment to apply: the server's first (state ID jupyter_env, as for
        # a venv), then one per kernel template, named after its file
        "conda_envs": [_conda_env(prefix, files_dir, "jupyter_env", SERVER_ENV, v["conda_environment"])]
        + [_conda_env(prefix, files_dir, f"conda_env_{conda_env_name(t)}", conda_env_name(t), t)
           for t in v["conda_kernel_environments"]],
    }


def _conda_env(prefix: str, files_dir: str, state_id: str, name: str, source: str) -> dict[str, str]:
    """One environment to apply: its state ID, name, template, prefix and rendered file."""
    return {"id": state_id, "name": name, "source": source, "dir": f"{prefix}/envs/{name}",
            "file": f"{files_dir}/{name}.yml"}
