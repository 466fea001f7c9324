"""The notebook user's kernel environment and the limits, without a host: the
pip state's only-missing mode, the probe's answers, the rendered kernelspec, unit,
config and index files, and the inventory's checks of the new variables."""

from __future__ import annotations

import json
import sys

import pytest

sys.path.insert(0, __import__("os").path.dirname(__file__))
from test_states import drive, make_call  # noqa: E402
from unit_support import LocalRunner  # noqa: E402

from jupyterfab import deploy, inventory, kernelenv  # noqa: E402
from jupyterfab.facts.commands import RunAs  # noqa: E402
from jupyterfab.facts.packages import (  # noqa: E402
    UNSATISFIED_SCRIPT,
    EnvironmentState,
    UnsatisfiedRequirements,
    dist_info_glob,
    dist_info_globs,
)
from jupyterfab.inventory import VAR_DEFAULTS, Host, InventoryError  # noqa: E402
from jupyterfab.runner import CmdResult  # noqa: E402
from jupyterfab.states.base import Context, Run  # noqa: E402
from jupyterfab.states.file import render_source  # noqa: E402

ENV = "/home/jupyter/.local/share/jupyterfab/kernel-env"
OK = CmdResult(0, "", "")


def kernel_env_call(state: EnvironmentState, **kw):
    return make_call("pip.installed", "kernel_env", {"env": state}, bin_env=ENV,
                     pkgs=["ipykernel", "tabulate"], user="jupyter", only_missing=True,
                     broken_hint="fab kernel-env --reset rebuilds it", **kw)


def test_a_complete_environment_is_left_alone_whatever_else_it_holds():
    ops, result = drive(kernel_env_call(EnvironmentState("ok")))
    assert ops == [] and result.ok and not result.changed
    assert "anything else in it is left alone" in result.comment


def test_only_the_missing_requirements_are_installed_with_the_environments_own_pip():
    ops, result = drive(kernel_env_call(EnvironmentState("ok", ("tabulate",)), installer="uv"))
    assert [op.command.text for op in ops] == [
        f"runuser -u jupyter -- {ENV}/bin/python -m pip install --disable-pip-version-check "
        "--no-input tabulate"]                              # no uninstall, no upgrade, no marker
    assert result.ok and result.changes["reason"] == "missing: tabulate"


def test_a_new_environment_is_made_as_the_user_with_uv_and_pip_in_it():
    ops, result = drive(kernel_env_call(EnvironmentState("absent"), installer="uv",
                                        find_links="/opt/jupyterfab/wheelhouse", no_index=True))
    texts = [op.command.text for op in ops if isinstance(op, Run)]
    assert texts[0] == f"runuser -u jupyter -- python3 -m venv --without-pip {ENV}"
    assert texts[1].startswith("runuser -u jupyter -- python3 -c ")          # uv from its wheel
    assert texts[2] == (f"runuser -u jupyter -- env UV_NO_CONFIG=1 {ENV}/bin/uv pip install --quiet --python {ENV}/bin/python "
                        "--compile-bytecode --no-index --find-links /opt/jupyterfab/wheelhouse pip "
                        f"ipykernel tabulate && runuser -u jupyter -- chmod -R go-w -- {ENV}")
    assert len(ops) == 3 and result.changes["venv"] == {"old": "", "new": ENV}


def test_a_new_environment_is_unpacked_as_the_user_from_the_bundle_built_here(tmp_path):
    bundle = tmp_path / "env-py3.11-k.tar.gz"
    bundle.write_bytes(b"tarball bytes")
    ops, result = drive(kernel_env_call(EnvironmentState("absent"), installer="uv", bundle=str(bundle),
                                        find_links="/opt/jupyterfab/wheelhouse", no_index=True))
    assert len(ops) == 1 and ops[0].stdin == b"tarball bytes"          # no pip, no uv, no compiling
    assert ops[0].command.parts[:6] == ("runuser", "-u", "jupyter", "--", "sh", "-c")
    assert ops[0].command.parts[7:] == ("sh", ENV, "python3")
    assert result.ok and result.changes["venv"] == {"old": "", "new": ENV}
    assert result.comment.startswith(f"unpacked the environment built here ({bundle.name}: 2 requirements)")
    dry, would = drive(kernel_env_call(EnvironmentState("absent"), bundle=str(bundle), test=True))
    assert dry == [] and would.ok is None and would.comment.startswith("would unpack ")


def test_the_bundle_never_touches_an_environment_that_is_there(tmp_path):
    bundle = tmp_path / "env-py3.11-k.tar.gz"
    bundle.write_bytes(b"tarball bytes")
    ops, result = drive(kernel_env_call(EnvironmentState("ok", ("tabulate",)), bundle=str(bundle)))
    assert [op.stdin for op in ops] == [None] and ops[0].command.text.endswith("--no-input tabulate")
    ops, result = drive(kernel_env_call(EnvironmentState("ok"), bundle=str(bundle)))
    assert ops == [] and not result.changed


def _tarball(files: dict[str, str]) -> bytes:
    import io
    import tarfile
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(text.encode()), 0o666
            tar.addfile(info, io.BytesIO(text.encode()))
    return out.getvalue()


def test_the_seed_script_renames_a_complete_environment_into_place_or_leaves_none(tmp_path):
    import os
    import subprocess

    from jupyterfab.states.pip import SEED
    dest = tmp_path / "home" / ".local" / "kernel-env"
    site = f"lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
    seed = ["sh", "-c", SEED, "sh", str(dest), sys.executable]
    whole = _tarball({f"{site}/seeded.py": "X = 1\n", f"{site}/big.py": os.urandom(9000).hex()})
    cut = subprocess.run(seed, input=whole[:len(whole) // 2], capture_output=True)
    assert cut.returncode != 0 and not dest.exists()        # a cut-off bundle: no environment
    done = subprocess.run(seed, input=whole, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in dest.parent.iterdir()) == ["kernel-env"]     # no .partial left
    assert (dest / site / "seeded.py").stat().st_mode & 0o022 == 0             # no one else writes it
    ran = subprocess.run([str(dest / "bin" / "python"), "-c", "import seeded; print(seeded.X)"],
                         capture_output=True, text=True)
    assert ran.stdout == "1\n", ran.stderr


def test_with_conda_a_new_environment_is_made_by_conda_create_as_the_user_on_the_deploys_channels():
    ops, result = drive(kernel_env_call(EnvironmentState("absent"), installer="pip",
                                        conda="/opt/jupyterfab/conda/bin/conda", conda_python="3.11",
                                        conda_channels=["http://mirror.example/c", "conda-forge"]))
    texts = [op.command.text for op in ops if isinstance(op, Run)]
    assert texts == [
        f"runuser -u jupyter -- /opt/jupyterfab/conda/bin/conda create --yes --quiet --prefix {ENV} "
        "--override-channels -c http://mirror.example/c -c conda-forge python=3.11 pip",
        f"runuser -u jupyter -- {ENV}/bin/python -m pip install --disable-pip-version-check "
        "--no-input ipykernel tabulate"]
    assert result.changes["venv"] == {"old": "", "new": ENV}
    # one that is there only gets what it lacks, by its own pip, as a venv does
    ops, result = drive(kernel_env_call(EnvironmentState("ok", ("tabulate",)),
                                        conda="/opt/jupyterfab/conda/bin/conda"))
    assert [op.command.text for op in ops] == [
        f"runuser -u jupyter -- {ENV}/bin/python -m pip install --disable-pip-version-check "
        "--no-input tabulate"]


def test_a_broken_environment_is_reported_never_replaced():
    ops, result = drive(kernel_env_call(EnvironmentState("broken", error="No such file: python3.9")))
    assert ops == [] and result.ok is False
    assert result.comment == (f"the environment {ENV} is broken (No such file: python3.9); it is left "
                              "as it is: fab kernel-env --reset rebuilds it")


def test_the_probe_runs_the_environments_python_as_its_owner_and_reads_its_answers():
    fact = UnsatisfiedRequirements(ENV, ("ipykernel", "numpy>=2"), RunAs("jupyter", "systemd", (("Group", "jupyter"),)))
    parts = fact.command().parts
    assert parts[:2] == ("sh", "-c") and 'out="$(eval "$ask" 2>&1)"' in parts[2]
    ask = RunAs("jupyter", "systemd", (("Group", "jupyter"),)).command(
        [f"{ENV}/bin/python", "-I", "-c", UNSATISFIED_SCRIPT, "ipykernel", "numpy>=2"], 60).text
    assert parts[3:] == ("sh", ask, ENV, "") and ask.startswith("systemd-run ")
    assert fact.parse("absent\n", 0) == EnvironmentState("absent")
    assert fact.parse("ok\n", 0) == EnvironmentState("ok")
    assert fact.parse("ok\nnumpy>=2\n", 0) == EnvironmentState("ok", ("numpy>=2",))
    assert fact.parse("broken\nerror while loading shared libraries\n", 0).state == "broken"


def test_the_unsatisfied_script_checks_names_versions_and_markers(tmp_path):
    import subprocess

    from jupyterfab.facts.packages import UNSATISFIED_SCRIPT
    out = subprocess.run([sys.executable, "-c", UNSATISFIED_SCRIPT, "pytest", "pytest<1",
                          "surely-not-installed-here", "pytest; python_version < '3'"],
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["pytest<1", "surely-not-installed-here"]


def test_the_unsatisfied_script_finds_bare_names_by_their_dist_info_without_importing_metadata(tmp_path):
    import subprocess

    from jupyterfab.facts.packages import UNSATISFIED_SCRIPT
    site = tmp_path / "site"
    (site / "Jupyter_Client-8.6.0.dist-info").mkdir(parents=True)
    (site / "Jupyter_Client-8.6.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: jupyter-client\nVersion: 8.6.0\n")
    watch = ("import sys; sys.path[:0] = [sys.argv.pop(1)]; sys.argv[0] = '-c'; "
             "exec(sys.argv.pop(1)); print('metadata', 'importlib.metadata' in sys.modules)")
    out = subprocess.run([sys.executable, "-I", "-c", watch, str(site), UNSATISFIED_SCRIPT,
                          "jupyter-client", "JUPYTER.client", " jupyter_client "],
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["metadata False"]          # every name found, nothing imported
    out = subprocess.run([sys.executable, "-I", "-c", watch, str(site), UNSATISFIED_SCRIPT,
                          "jupyter-client", "not-here-at-all", "jupyter-client>=99"],
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["not-here-at-all", "jupyter-client>=99", "metadata True"]


def derived(**overrides):
    """The deploy's variables for a Debian 12 host (its plan; the materials by hand)."""
    host = Host("jupyter1", "203.0.113.10", vars=dict(VAR_DEFAULTS, allow_plain_http=True, **overrides))
    plan = deploy.plan_host(host, {"os_id": "debian", "os_version": "12", "machine": "x86_64",
                                   "glibc": (2, 36), "python": "3.11", "init": "systemd"})
    return {**plan.vars, "hashed_password": "argon2:$argon2id$placeholder", "wheelhouse_local": "",
            "env_bundle": "", "kernel_bundle": "", "extensions_local": ""}


def render(template: str, **overrides) -> str:
    v = derived(**overrides)
    text, _ = render_source(template, Context("jupyter1", vars=v, files_dir=deploy.PROJECT / "files",
                                              init="systemd"))
    return text


def test_the_kernelspec_runs_the_users_python_after_raising_its_oom_score():
    spec = json.loads(render("jupyter/kernel.json.j2"))
    assert spec["argv"][:3] == ["/bin/sh", "-c", 'echo 500 > /proc/self/oom_score_adj; exec "$0" "$@"']
    assert spec["argv"][3:] == [f"{ENV}/bin/python", "-Xfrozen_modules=off", "-m", "ipykernel_launcher",
                                "-f", "{connection_file}"]
    assert spec["env"]["PATH"].startswith(f"{ENV}/bin:") and spec["env"]["VIRTUAL_ENV"] == ENV
    plain = json.loads(render("jupyter/kernel.json.j2", kernel_oom_score_adj=0))
    assert plain["argv"][0] == f"{ENV}/bin/python"


def test_limits_turned_off_leave_no_line_in_the_unit():
    unit = render("jupyter/jupyter.service.j2", memory_max=0, tasks_max=0, oom_score_adj=0)
    assert "MemoryMax" not in unit and "TasksMax" not in unit and "OOMScoreAdj" not in unit
    assert "\nOOMPolicy=continue\n" in unit      # the line, not the comment
    assert "MemoryMax=2G\n" in render("jupyter/jupyter.service.j2", memory_max="2G")


def test_the_server_config_culls_idle_kernels_but_not_busy_ones_and_uses_the_users_kernel():
    config = render("jupyter/jupyter_server_config.py.j2", cull_idle_timeout=600)
    assert "c.MappingKernelManager.cull_idle_timeout = 600\n" in config
    assert "c.MappingKernelManager.cull_interval = 150\n" in config
    assert "c.MappingKernelManager.cull_busy = False\n" in config
    assert "c.MappingKernelManager.cull_connected = False\n" in config
    assert "c.KernelSpecManager.ensure_native_kernel = False" in config
    compile(config, "jupyter_server_config.py", "exec")
    off = render("jupyter/jupyter_server_config.py.j2", cull_idle_timeout=0, resource_usage=False)
    assert "cull_idle_timeout" not in off and "ResourceUseDisplay" not in off
    compile(off, "jupyter_server_config.py", "exec")


def test_python_packages_seed_the_users_environment_and_server_packages_the_servers():
    v = derived(python_packages=["pandas"], server_packages=["jupyterlab-git"])
    assert v["kernel_requirements"] == ["ipykernel", "pandas"]
    assert "pandas" not in v["requirements"]
    assert "jupyterlab-git" in v["requirements"] and "jupyter-resource-usage" in v["requirements"]
    assert "jupyter-resource-usage" not in derived(resource_usage=False)["requirements"]


def test_the_users_index_files_carry_the_deploys_index():
    mirror = "http://198.18.0.1:3141/simple/"
    pip_conf = render("jupyter/pip.conf.j2", pip_index_url=mirror)
    assert f"index-url = {mirror}\n" in pip_conf and "no-index" not in pip_conf
    assert "trusted-host = 198.18.0.1:3141\n" in pip_conf          # plain HTTP: pip would ignore it
    uv = render("jupyter/uv.toml.j2", pip_index_url=mirror)
    assert f'[[index]]\nurl = "{mirror}"\ndefault = true' in uv
    import tomllib
    assert tomllib.loads(uv)["index"][0]["url"] == mirror


def test_jupyterlab_settings_go_over_jupyterfabs_defaults():
    mine = {"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"},
            "@jupyterlab/apputils-extension:notification": {"checkForUpdates": True}}
    settings = json.loads(render("jupyter/default_setting_overrides.json.j2", jupyterlab_settings=mine))
    assert settings["@jupyterlab/apputils-extension:notification"] == {"fetchNews": "false",
                                                                      "checkForUpdates": True}
    assert settings["@jupyterlab/apputils-extension:themes"] == {"theme": "JupyterLab Dark"}


@pytest.mark.parametrize("key, value, says", [
    ("memory_max", "lots", "must be a share of RAM"),
    ("memory_max", "150%", "must be a share of RAM"),
    ("tasks_max", -1, "must be a whole number, 0 or more"),
    ("cull_idle_timeout", "1h", "must be a whole number"),
    ("oom_score_adj", 2000, "between -1000 and 1000"),
    ("jupyterlab_settings", {"theme": "dark"}, "give each plugin's settings as a mapping"),
    ("jupyterlab_settings", "dark", "must be a mapping"),
    ("python_packages", ["--index-url=http://evil"], "is not a pip requirement"),
])
def test_the_new_variables_are_checked_with_the_key_named(key, value, says):
    text = "hosts:\n  a:\n    address: x\n    vars:\n      " + json.dumps({key: value})[1:-1] + "\n"
    with pytest.raises(InventoryError) as err:
        inventory.parse(text, "hosts.yaml")
    assert f"hosts.a.vars.{key}: " in str(err.value) and says in str(err.value)


@pytest.mark.parametrize("value", ["75%", "2G", "512M", 0, "", "0", "33.5%"])
def test_memory_max_takes_a_share_a_size_or_off(value):
    inventory.parse(f"hosts:\n  a:\n    address: x\n    vars:\n      memory_max: {json.dumps(value)}\n")
    assert kernelenv.off(value) == (value in (0, "", "0"))


def test_a_kernel_bundle_is_built_only_for_a_host_without_its_kernel_environment(monkeypatch):
    from pathlib import Path

    from jupyterfab import envbundle
    from jupyterfab.facts.host import HostInfo
    built = []
    monkeypatch.setattr(envbundle, "ensure", lambda reqs, wheels, **kw: built.append(reqs) or Path("/c/k.tar.gz"))
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    host = Host("jupyter1", "203.0.113.10", vars=dict(VAR_DEFAULTS, allow_plain_http=True))
    probed = HostInfo(notebook_user="jupyter").parse(
        "os=debian 12\nnotebook_user=jupyter:x:998:998::/home/jupyter:/bin/bash\n"
        "notebook_user_ours=yes\nnotebook_user_kernel_env=yes\n", 0)
    info = {**probed, "python": here, "machine": __import__("platform").machine()}
    plan = deploy.plan_host(host, info)
    assert deploy.build_kernel_bundle(plan, info, "/w", print) == "" and built == []
    info["notebook_user"] = {**info["notebook_user"], "kernel_env": False}
    assert deploy.build_kernel_bundle(plan, info, "/w", print) == "/c/k.tar.gz"
    assert built == [plan.vars["kernel_requirements"]]
    assert deploy.build_kernel_bundle(plan, {**info, "notebook_user": None}, "/w", print) == "/c/k.tar.gz"


def test_bare_names_found_by_their_dist_info_are_satisfied_without_starting_python(tmp_path):
    """The probe for real, with an interpreter that notes each time it is started."""
    real = tmp_path / "real" / "python3.11"
    real.parent.mkdir()
    real.write_text(f"#!/bin/sh\necho started >> {tmp_path}/started\nexec {sys.executable} \"$@\"\n")
    real.chmod(0o755)
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").symlink_to(real)
    (env / "pyvenv.cfg").write_text("home = /usr/bin\n")
    site = env / "lib" / "python3.11" / "site-packages"
    (site / "Jupyter_Client-8.6.0.dist-info").mkdir(parents=True)
    (site / "ipykernel-6.29.5.dist-info").mkdir()

    def ask(*requirements):
        (tmp_path / "started").unlink(missing_ok=True)
        fact = UnsatisfiedRequirements(str(env), requirements)
        state = fact.parse(LocalRunner().run(fact.command()).stdout, 0)
        return state.state, (tmp_path / "started").exists()

    assert ask("ipykernel", "jupyter-client", "JUPYTER.client") == ("ok", False)
    # anything else asks the interpreter
    assert ask("ipykernel", "not-here-at-all")[1]
    assert ask("ipykernel>=6")[1]
    (env / "pyvenv.cfg").unlink()                   # no longer a venv
    assert ask("ipykernel")[1]
    (env / "pyvenv.cfg").write_text("home = /usr/bin\n")
    site.parent.rename(env / "lib" / "python3.9")  # only another version's folder
    assert ask("ipykernel")[1]
    real.rename(tmp_path / "real" / "gone")         # the interpreter it points at is gone
    assert ask("ipykernel") == ("broken", False)


def test_a_bare_names_glob_matches_its_folder_in_any_case_and_separator():
    assert dist_info_glob("Jupyter.client") == "[jJ][uU][pP][yY][tT][eE][rR][-_.][cC][lL][iI][eE][nN][tT]-*.dist-info"
    assert dist_info_globs(("ipykernel", "py3-x")) == "[iI][pP][yY][kK][eE][rR][nN][eE][lL]-*.dist-info [pP][yY]3[-_.][xX]-*.dist-info"
    assert dist_info_globs(("ipykernel", "numpy>=2")) == "" and dist_info_globs(()) == ""
