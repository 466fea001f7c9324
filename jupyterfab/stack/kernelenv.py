"""The notebook user's own Python: the kernel environment, and what points at it.

Two environments run on a host. The server's (``{prefix}/venv``) is root's: built,
upgraded and rolled back by jupyterfab, never written by notebooks. The kernel
environment is the notebook user's:

    ~/.local/share/jupyterfab/kernel-env     a venv owned by the notebook user (with
                                             env_provider conda: a conda environment,
                                             so %conda install works too): the python3
                                             kernel, %pip, !pip, a terminal's pip
    {prefix}/share/jupyter/kernels/python3   its kernelspec (JUPYTER_PATH: ahead of the
                                             server environment's own python3 kernel)
    {prefix}/etc/xdg/pip/pip.conf            the deploy's index (pip_index_url, the
    {prefix}/etc/xdg/uv/uv.toml              wheelhouse) as pip's and uv's system-wide
                                             defaults for the user (XDG_CONFIG_DIRS); the
                                             user's own ~/.config/pip/pip.conf wins
    {prefix}/etc/jupyter/labconfig/          JupyterLab setting defaults (JUPYTER_CONFIG_PATH)
    {prefix}/etc/xdg/conda/condarc           (conda) the deploy's conda_channels, for the
                                             user's conda (CONDARC; CONDA_EXE names conda)

A deploy creates the kernel environment once (``python -m venv``, or with conda
``conda create`` of the host's Python and pip; then ipykernel and ``python_packages``)
and afterwards only installs what it lacks; no deploy, ``upgrade`` or rollback
replaces it. ``fab kernel-env --reset`` rebuilds it when it is broken.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

KERNEL_ENV = ".local/share/jupyterfab/kernel-env"
SEED = ["ipykernel"]
# JupyterLab asks every first visitor whether to fetch Jupyter's news feed, and
# checks for updates by calling out: neither belongs on a deployed server.
LAB_DEFAULTS = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false",
                                                                  "checkForUpdates": False}}


def xdg_config_dir(v: dict[str, Any]) -> str:
    """pip.conf and uv.toml for the user's installs (XDG_CONFIG_DIRS of Jupyter's processes)."""
    return f"{v['prefix'].rstrip('/')}/etc/xdg"


def home_paths(home: str) -> dict[str, str]:
    """What Jupyter Server writes as it runs, where Jupyter keeps it by default: in the
    notebook user's home. Data, never read as code (its config and data folders, where
    it would find code, are root's: files/jupyter/command.j2)."""
    home = home.rstrip("/")
    return {"jupyter_runtime_dir": f"{home}/.local/share/jupyter/runtime",
            "jupyterlab_settings_dir": f"{home}/.jupyter/lab/user-settings",
            "jupyterlab_workspaces_dir": f"{home}/.jupyter/lab/workspaces",
            "notary_dir": f"{home}/.local/share/jupyter"}


def kernel_env_dir(home: str) -> str:
    return f"{home.rstrip('/')}/{KERNEL_ENV}"


def lab_settings(own: dict[str, dict]) -> dict[str, dict]:
    """jupyterfab's JupyterLab defaults with the inventory's ``jupyterlab_settings`` over them."""
    merged = {plugin: dict(settings) for plugin, settings in LAB_DEFAULTS.items()}
    for plugin, settings in own.items():
        merged.setdefault(plugin, {}).update(settings)
    return merged


def off(value: Any) -> bool:
    """0, "0" and "" turn a limit off."""
    return value in (0, "0", "", None)


def template_vars(v: dict[str, Any]) -> dict[str, Any]:
    """What the states and templates need for the user's environment and the limits."""
    prefix = v["prefix"].rstrip("/")
    kenv = kernel_env_dir(v["jupyter_home"])
    conda = v["env_provider"] == "conda"
    return {
        "kernel_env_dir": kenv,
        "kernel_env": True,
        # what activating the environment sets: conda's activate sets CONDA_PREFIX
        "kernel_env_var": "CONDA_PREFIX" if conda else "VIRTUAL_ENV",
        "condarc": f"{xdg_config_dir(v)}/conda/condarc" if conda else "",
        "kernel_requirements": [*SEED, *v["python_packages"]],
        "jupyter_data_path": f"{prefix}/share/jupyter",
        "jupyter_config_path": f"{prefix}/etc/jupyter",
        # what Jupyter writes as it runs: the notebook user's, as before (home_paths)
        **home_paths(v["jupyter_home"]),
        "xdg_config_dir": xdg_config_dir(v),
        "service_path": f"{kenv}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "lab_settings": lab_settings(v["jupyterlab_settings"]),
        "memory_max": "" if off(v["memory_max"]) else str(v["memory_max"]),
        "cull_interval": max(1, min(300, v["cull_idle_timeout"] // 4)),
        # pip ignores an index over plain HTTP (a mirror on the LAN) unless its host is trusted
        "pip_trusted_host": urlsplit(v["pip_index_url"]).netloc
        if v["pip_index_url"].startswith("http://") else "",
    }


# --- fab kernel-env: look at it, or rebuild it ---------------------------------------

# $1 the environment, $2 the list to write. What is installed, one requirement a
# line: pip freeze when the interpreter runs, else read from the dist-info folders
# (a broken environment can still say what it held). Run as the notebook user.
FREEZE = r"""
env="$1"; list="$2"
if ! "$env/bin/python" -m pip freeze --exclude-editable > "$list.tmp" 2>/dev/null; then
    for d in "$env"/lib/python3*/site-packages/*.dist-info; do
        [ -d "$d" ] || continue; n="${d##*/}"; n="${n%.dist-info}"; echo "${n%-*}==${n##*-}"
    done > "$list.tmp"
fi
mv -f "$list.tmp" "$list"
"""

# $1 the environment, $2 the list. Saves the list beside the environment, then
# removes the environment (as its owner); prints the list.
RESET = r"""
set -e
env="$1"; list="$2"
if [ -e "$env" ]; then
    sh -c "$0" sh "$env" "$list"
    rm -rf "$env"
fi
[ -f "$list" ] && cat "$list"
true
"""


def freeze_list_path(env_dir: str, stamp: str) -> str:
    """Beside the environment: ``kernel-env.<stamp>.txt``, what it held when it was reset."""
    return f"{env_dir}.{stamp}.txt"
