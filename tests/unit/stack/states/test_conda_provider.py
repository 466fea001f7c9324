"""The conda environment provider: inventory rules, what the real state files
render for conda and venv hosts, and the conda states applied for real by the
local shell with the installer the tests build (tests/support), in a temp
directory. No root, no conda channels."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest
from support import conda_channel, conda_installer
from unit_support import PROJECT, LocalRunner, by_id

from jupyterfab import inventory
from jupyterfab.engine import sls
from jupyterfab.engine.states.base import Context
from jupyterfab.engine.states.file import render_source
from jupyterfab.inventory import InventoryError
from jupyterfab.stack import deploy, passwords
from jupyterfab.stack.states.conda import MARKER_NAME, kernel_name, sentinel_path

SHA = "ab" * 32

needs_tools = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("bash", "sha256sum", "tar", "awk", "python3")),
    reason="needs bash, coreutils, tar, awk and python3 with venv")


# --- inventory ----------------------------------------------------------------------------

CONDA_GROUP = """\
groups:
  science:
    vars:
      env_provider: conda
      conda_installer: https://example.org/Miniforge3-Linux-x86_64.sh
hosts:
  web1:
    address: 203.0.113.10
    groups: [science]
"""


def test_conda_without_the_installer_sha256_is_refused_naming_where_conda_was_chosen():
    with pytest.raises(InventoryError) as caught:
        inventory.parse(CONDA_GROUP, "hosts.yaml")
    message = str(caught.value)
    assert message.startswith("hosts.yaml:4: groups.science.vars.env_provider: ")
    assert "conda needs conda_installer_sha256" in message and "web1" in message


def test_conda_with_installer_and_sha256_loads_and_venv_stays_the_default():
    text = CONDA_GROUP.replace("Linux-x86_64.sh\n", f"Linux-x86_64.sh\n      conda_installer_sha256: {SHA}\n")
    text += "  web2:\n    address: 203.0.113.11\n"
    inv = inventory.parse(text, "hosts.yaml")
    assert inv.hosts["web1"].vars["env_provider"] == "conda"
    assert inv.hosts["web1"].vars["conda_prefix"] == "/opt/jupyterfab/conda"
    assert inv.hosts["web2"].vars["env_provider"] == "venv"


def test_choosing_conda_with_set_needs_the_installer_too():
    inv = inventory.parse("hosts:\n  web1:\n    address: 203.0.113.10\n", "hosts.yaml")
    with pytest.raises(InventoryError, match=r"^--set: conda needs conda_installer "):
        inv.select(["web1"], overrides={"env_provider": "conda"})


@pytest.mark.parametrize("key, value, complaint", [
    ("conda_installer_sha256", "abc123", "64 hex digits"),
    ("conda_prefix", "/opt/my conda", "no spaces"),
    ("conda_prefix", "relative/conda", "absolute path"),
    ("conda_installer", "ftp://example.org/x.sh", "https URL"),
    ("conda_environment", "../secrets.yml", "inside files/"),
    ("conda_kernel_environments", ["conda/jupyter.yml.j2"], "not be jupyter or base"),
    ("conda_kernel_environments", ["a/x.yml.j2", "b/x.yml"], "two templates make the environment 'x'"),
    ("conda_packages", ["numpy; rm -rf /"], "not a conda package spec"),
    ("conda_channels", ["ftp://example.org/channel"], "not a conda channel"),
    ("conda_channels", ["conda-forge; rm -rf /"], "not a conda channel"),
    ("conda_channels", [], "at least one channel"),
])
def test_conda_values_are_checked_with_file_line_and_key(key, value, complaint):
    text = f"hosts:\n  web1:\n    address: 203.0.113.10\n    vars:\n      {key}: {json.dumps(value)}\n"
    with pytest.raises(InventoryError, match=f"^hosts.yaml:5: hosts.web1.vars.{key}: .*{complaint}"):
        inventory.parse(text, "hosts.yaml")


def test_a_relative_installer_path_is_relative_to_the_inventory(tmp_path):
    (tmp_path / "hosts.yaml").write_text(
        "hosts:\n  web1:\n    address: 203.0.113.10\n    vars:\n      env_provider: conda\n"
        f"      conda_installer: installers/Miniforge3.sh\n      conda_installer_sha256: {SHA}\n")
    inv = inventory.load(tmp_path / "hosts.yaml")
    assert inv.hosts["web1"].vars["conda_installer"] == str(tmp_path / "installers/Miniforge3.sh")


# --- what the real state files render ---------------------------------------------------

INFO = {"hashed_password": "argon2:$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", "python": "3.11",
        "machine": "x86_64", "glibc": (2, 36)}


def rendered(**host_vars):
    host = inventory.Host("web1", "203.0.113.10",
                          vars={**inventory.VAR_DEFAULTS, "build_env_here": 0, "allow_plain_http": True, **host_vars})
    variables = deploy.materials(deploy.plan_host(host, INFO), INFO, passwords.HashChooser(None))
    ctx = Context(host="web1", vars=variables, files_dir=PROJECT / "files")
    decls = {d.id: d for d in sls.load_states(PROJECT / "states", ctx)}
    return decls, variables, lambda template: render_source(template, ctx)[0]


def test_venv_hosts_are_unaffected_by_the_conda_provider():
    decls, v, render = rendered()
    assert not [d.id for d in decls.values() if d.module == "conda"]
    assert decls["jupyter_env"].fun == "pip.installed"
    assert decls["jupyter_env"].args["bin_env"] == "/opt/jupyterfab/venv"
    assert "ExecStart=/opt/jupyterfab/venv/bin/python -I -u /opt/jupyterfab/venv/bin/jupyter-lab " in render("jupyter/jupyter.service.j2")
    assert "conda" not in render("jupyter/jupyter_server_config.py.j2").lower()


def test_conda_hosts_run_jupyter_from_the_conda_environment():
    decls, v, render = rendered(env_provider="conda", conda_installer="https://example.org/M.sh",
                                conda_installer_sha256=SHA,
                                conda_kernel_environments=["conda/analysis.yml.j2"])
    assert decls["jupyter_env"].fun == "conda.env_present"
    assert decls["jupyter_env"].name == "/opt/jupyterfab/conda/envs/jupyter"
    assert decls["conda_env_analysis"].name == "/opt/jupyterfab/conda/envs/analysis"
    assert decls["conda"].args == {**decls["conda"].args, "source": "https://example.org/M.sh",
                                   "sha256": SHA}
    assert "conda_download_tools" in decls          # curl for the URL
    assert "ExecStart=/opt/jupyterfab/conda/envs/jupyter/bin/python -I -u /opt/jupyterfab/conda/envs/jupyter/bin/jupyter-lab " in render(
        "jupyter/jupyter.service.j2")
    config = render("jupyter/jupyter_server_config.py.j2")
    assert 'kernel_spec_manager_class = "nb_conda_kernels.CondaKernelSpecManager"' in config
    # the service restarts when the environment changes, as it does for a venv
    watched = [t for r in decls["jupyter_service"].requisites if r.kind == "watch" for t in r.targets]
    assert ("conda", "jupyter_env") in watched
    ctx = Context(host="web1", vars={**v, "env_name": "jupyter"}, files_dir=PROJECT / "files")
    environment = render_source("jupyter/environment.yml.j2", ctx)[0]
    assert "  - python=3.11\n  - pip\n  - nb_conda_kernels\n  - pip:\n    - 'jupyterlab==4.4.*'\n" \
        in environment


def test_with_conda_the_users_kernel_environment_is_a_conda_environment_on_the_deploys_channels():
    channels = ["http://198.18.0.1:8765/channel", "conda-forge"]
    decls, v, render = rendered(env_provider="conda", conda_installer="https://example.org/M.sh",
                                conda_installer_sha256=SHA, conda_channels=channels,
                                python_packages=["tabulate"])
    kenv = "/home/jupyter/.local/share/jupyterfab/kernel-env"
    state = decls["kernel_env"]
    assert state.fun == "pip.installed" and state.args["bin_env"] == kenv
    assert state.args["user"] == "jupyter" and state.args["only_missing"] is True
    assert state.args["conda"] == "/opt/jupyterfab/conda/bin/conda"
    assert state.args["conda_python"] == "3.11" and list(state.args["conda_channels"]) == channels
    assert list(state.args["pkgs"]) == ["ipykernel", "tabulate"]
    assert ("conda", "conda") in [t for r in state.requisites if r.kind == "require" for t in r.targets]
    assert decls["user_condarc"].name == "/opt/jupyterfab/etc/xdg/conda/condarc"
    assert render("jupyter/condarc.j2").endswith(
        "channels:\n  - http://198.18.0.1:8765/channel\n  - conda-forge\n")
    unit = render("jupyter/jupyter.service.j2")
    for line in (f"Environment=CONDA_PREFIX={kenv}", "Environment=CONDARC=/opt/jupyterfab/etc/xdg/conda/condarc",
                 "Environment=CONDA_EXE=/opt/jupyterfab/conda/bin/conda", f"Environment=PATH={kenv}/bin:"):
        assert line in unit
    assert "VIRTUAL_ENV" not in unit
    spec = json.loads(render("jupyter/kernel.json.j2"))
    assert f"{kenv}/bin/python" in spec["argv"] and spec["env"]["CONDA_PREFIX"] == kenv
    ctx = Context(host="web1", vars={**v, "env_name": "jupyter"}, files_dir=PROJECT / "files")
    assert "channels:\n  - http://198.18.0.1:8765/channel\n  - conda-forge\n" in \
        render_source("jupyter/environment.yml.j2", ctx)[0]


# --- applied for real by the local shell ------------------------------------------------

@pytest.fixture(scope="module")
def installer(tmp_path_factory):
    return conda_installer.build(tmp_path_factory.mktemp("installer"))


INSTALLED = """\
conda:
  conda.installed:
    - name: {prefix}
    - source: {source}
    - sha256: {sha}
"""


def install_sls(project, prefix, source, sha):
    project.write("states/main.sls", INSTALLED.format(prefix=prefix, source=source, sha=sha))
    project.write("states/top.sls", "base:\n  '*':\n    - main\n")


def test_the_test_installer_is_reproducible_and_refuses_an_existing_prefix_like_miniforge(
        installer, tmp_path):
    again = conda_installer.build(tmp_path)
    assert again.sha256 == installer.sha256
    (tmp_path / "taken").mkdir()
    runner = LocalRunner()
    r = runner.run(f"bash {installer.path} -b -p {tmp_path / 'taken'}")
    assert r.rc == 1 and "ERROR: File or directory already exists" in r.stderr
    assert list((tmp_path / "taken").iterdir()) == []


@needs_tools
def test_a_wrong_sha256_refuses_before_anything_reaches_the_host(project, installer, tmp_path):
    prefix = tmp_path / "conda"
    install_sls(project, prefix, installer.path, "0" * 64)
    runner = LocalRunner()
    for test in (True, False):
        (result,) = project.apply(runner, test=test)
        assert result.ok is False
        assert f"has sha256 {installer.sha256}, but the inventory expects {'0' * 64}" in result.comment
        assert "nothing was sent to the host" in result.comment
    assert runner.calls == []            # not even a probe
    assert not prefix.exists()


@needs_tools
def test_install_then_a_second_apply_is_a_no_op_and_a_dry_run_predicted_it(project, installer,
                                                                             tmp_path):
    prefix = tmp_path / "opt" / "conda"
    install_sls(project, prefix, installer.path, installer.sha256)
    runner = LocalRunner()
    (dry,) = project.apply(runner, test=True)
    assert dry.ok is None and "would upload the installer, check its sha256" in dry.comment
    assert len(runner.calls) == 1 and not prefix.exists()       # the fact batch only

    (first,) = project.apply(runner)
    assert first.ok is True and first.changed, first.comment + first.stderr
    assert (prefix / "conda-meta").is_dir() and (prefix / "bin/conda").is_file()
    assert (prefix / MARKER_NAME).read_text().split("\n")[0] == installer.sha256
    leftovers = sorted(p.name for p in prefix.parent.iterdir())
    assert leftovers == ["conda"]        # no installer copy, no sentinel

    runner.calls.clear()
    (second,) = project.apply(runner)
    assert second.ok is True and not second.changed
    assert "marker matches): not reinstalling" in second.comment
    assert len(runner.calls) == 1

    other = "cd" * 32
    install_sls(project, prefix, "https://example.org/newer.sh", other)
    (refused,) = project.apply(runner)
    assert refused.ok is False and "holds conda from another installer" in refused.comment
    assert "Set conda_prefix to a new path" in refused.comment


@needs_tools
def test_a_prefix_jupyterfab_did_not_install_is_never_installed_over(project, installer, tmp_path):
    prefix = tmp_path / "conda"
    prefix.mkdir()
    (prefix / "notes.txt").write_text("mine\n")
    install_sls(project, prefix, installer.path, installer.sha256)
    (result,) = project.apply(LocalRunner())
    assert result.ok is False and "jupyterfab did not install conda there" in result.comment
    assert sorted(p.name for p in prefix.iterdir()) == ["notes.txt"]


@needs_tools
def test_an_interrupted_install_is_wiped_and_redone(project, installer, tmp_path):
    prefix = tmp_path / "conda"
    (prefix / "pkgs").mkdir(parents=True)            # what a killed installer leaves
    Path(sentinel_path(str(prefix))).write_text(installer.sha256 + "\n")
    install_sls(project, prefix, installer.path, installer.sha256)
    (result,) = project.apply(LocalRunner())
    assert result.ok is True and result.changes["reason"] == "an earlier install was interrupted"
    assert not (prefix / "pkgs").exists() and (prefix / "bin/conda").is_file()
    assert not Path(sentinel_path(str(prefix))).exists()


@pytest.fixture
def http_server(tmp_path):
    """Serves tmp_path/www over HTTP on loopback: a download URL for the installer."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@needs_tools
@pytest.mark.skipif(not (shutil.which("curl") or shutil.which("wget")), reason="needs curl or wget")
def test_a_downloaded_installer_is_checked_on_the_host_before_it_runs(project, installer,
                                                                       tmp_path, http_server):
    www, url = http_server
    tampered = installer.path.read_bytes().replace(b"installation finished.", b"installation HACKED!!")
    (www / "Miniforge3.sh").write_bytes(tampered)
    prefix = tmp_path / "conda"
    install_sls(project, prefix, f"{url}/Miniforge3.sh", installer.sha256)
    (result,) = project.apply(LocalRunner())
    assert result.ok is False and not result.changed
    assert result.comment.startswith("the conda installer's sha256 is ")
    assert f"expected {installer.sha256}: not running it" in result.comment
    assert sorted(p.name for p in tmp_path.iterdir() if "conda" in p.name) == []   # nothing left

    shutil.copy(installer.path, www / "Miniforge3.sh")
    (result,) = project.apply(LocalRunner())
    assert result.ok is True and "(downloaded)" in result.comment
    assert (prefix / MARKER_NAME).read_text().split("\n")[1] == f"{url}/Miniforge3.sh"


ENVIRONMENT = """\
conda:
  conda.installed:
    - name: {prefix}
    - source: {installer}
    - sha256: {sha}

analysis_file:
  file.managed:
    - name: {files}/analysis.yml
    - source: analysis.yml.j2
    - makedirs: true

analysis:
  conda.env_present:
    - name: {prefix}/envs/analysis
    - conda: {prefix}/bin/conda
    - file: {files}/analysis.yml
    - require:
      - conda: conda
    - watch:
      - file: analysis_file

kernels:
  conda.kernels:
    - name: {prefix}/envs/analysis
    - conda: {prefix}/bin/conda
    - require:
      - conda: analysis
"""


@needs_tools
def test_an_environment_is_updated_only_when_its_environment_yml_changes(project, installer,
                                                                         tmp_path):
    prefix, files = tmp_path / "conda", tmp_path / "environments"
    project.vars = {"comment": "first"}
    project.write("files/analysis.yml.j2",
                  "# {{ comment }}\nname: analysis\nchannels:\n  - conda-forge\n"
                  "dependencies:\n  - python\n")   # no pip: no ensurepip, a quicker test
    project.sls(ENVIRONMENT.format(prefix=prefix, installer=installer.path, sha=installer.sha256,
                                   files=files))
    runner = LocalRunner()
    results = by_id(project.apply(runner))
    assert [r.ok for r in results.values()] == [True] * 4, [r.comment + r.stderr for r in results.values()]
    assert results["analysis"].changes["reason"] == "no environment yet"
    history = prefix / "envs/analysis/conda-meta/history"
    assert history.read_text().count("/bin/conda env update") == 1

    runner.calls.clear()
    results = by_id(project.apply(runner))
    assert not [r.state_id for r in results.values() if r.changed]
    assert "is up to date with" in results["analysis"].comment
    assert len(runner.calls) == 1                    # one fact batch, no conda run

    project.vars = {"comment": "second"}
    dry = by_id(project.apply(runner, test=True))
    assert dry["analysis"].ok is None and "analysis.yml changed" in dry["analysis"].comment
    assert history.read_text().count("/bin/conda env update") == 1
    results = by_id(project.apply(runner))
    assert results["analysis"].changed and results["analysis"].ok
    assert history.read_text().count("/bin/conda env update") == 2


@needs_tools
def test_a_conda_package_no_channel_has_fails_the_update_like_conda_does(project, installer,
                                                                         tmp_path):
    prefix, files = tmp_path / "conda", tmp_path / "environments"
    project.write("files/analysis.yml.j2", "name: analysis\nchannels: [conda-forge]\n"
                  "dependencies:\n  - python\n  - nb_conda_kernels\n")
    project.sls(ENVIRONMENT.format(prefix=prefix, installer=installer.path, sha=installer.sha256,
                                   files=files))
    results = by_id(project.apply(LocalRunner()))
    assert results["analysis"].ok is False
    assert "PackagesNotFoundError: The following packages are not available from current " \
           "channels:\n\n  - nb_conda_kernels" in results["analysis"].stderr
    assert results["kernels"].ok is False and "requisite failed" in results["kernels"].comment
    assert not (prefix / "envs/analysis/.jupyterfab-conda-env").exists()   # retried next time


@needs_tools
def test_every_environment_with_ipykernel_gets_a_kernelspec_and_stale_ones_go(project, installer,
                                                                              tmp_path):
    prefix = tmp_path / "conda"
    server = prefix / "envs/jupyter"
    project.sls(f"""\
conda:
  conda.installed:
    - name: {prefix}
    - source: {installer.path}
    - sha256: {installer.sha256}
kernels:
  conda.kernels:
    - name: {server}
    - conda: {prefix}/bin/conda
    - require:
      - conda: conda
""")
    runner = LocalRunner()
    project.apply(runner)
    # environments as `conda env list` sees them: one with ipykernel (made by hand,
    # as a user would with conda create), one without
    for name, ipykernel in (("jupyter", True), ("scratch", True), ("tools", False)):
        (prefix / "envs" / name / "conda-meta").mkdir(parents=True)
        if ipykernel:
            (prefix / "envs" / name / "lib/python3.11/site-packages/ipykernel").mkdir(parents=True)
    results = by_id(project.apply(runner))
    kernels_dir = server / "share/jupyter/kernels"
    assert sorted(p.name for p in kernels_dir.iterdir()) == ["conda-env-jupyter-py",
                                                             "conda-env-scratch-py"]
    spec = json.loads((kernels_dir / "conda-env-scratch-py/kernel.json").read_text())
    assert spec["argv"][0] == str(prefix / "envs/scratch/bin/python")
    assert spec["display_name"] == "Python [conda env:scratch]"
    assert (kernels_dir / "conda-env-scratch-py/kernel.json").stat().st_mode & 0o777 == 0o644
    assert results["kernels"].changes["kernels"] == {
        "conda-env-jupyter-py": "Python [conda env:jupyter]",
        "conda-env-scratch-py": "Python [conda env:scratch]"}

    runner.calls.clear()
    results = by_id(project.apply(runner))
    assert not results["kernels"].changed and len(runner.calls) == 1

    shutil.rmtree(prefix / "envs/scratch")
    (kernels_dir / "python3").mkdir()                 # ipykernel's own: not ours to touch
    results = by_id(project.apply(runner))
    assert results["kernels"].changes == {"removed": ["conda-env-scratch-py"]}
    assert sorted(p.name for p in kernels_dir.iterdir()) == ["conda-env-jupyter-py", "python3"]

    # with nb_conda_kernels in the server's environment, it lists them: ours go
    (server / "lib/python3.11/site-packages/nb_conda_kernels").mkdir(parents=True)
    results = by_id(project.apply(runner))
    assert "nb_conda_kernels in the server environment" in results["kernels"].comment
    assert sorted(p.name for p in kernels_dir.iterdir()) == ["python3"]


def test_kernel_names_follow_nb_conda_kernels():
    assert kernel_name("/opt/c/envs/analysis", "/opt/c") == ("conda-env-analysis-py",
                                                              "Python [conda env:analysis]")
    assert kernel_name("/opt/c", "/opt/c") == ("conda-root-py", "Python [conda env:root]")
    assert kernel_name("/srv/my env", "/opt/c")[0] == "conda-env-srv-my-env-py"


# --- the user's conda environment: conda create, then conda install from a channel -------

@needs_tools
def test_conda_install_takes_a_package_from_the_condarc_channel_over_http(installer, tmp_path,
                                                                          http_server):
    """What %conda install runs in the user's environment: the channel the condarc names,
    served over HTTP; the package is unpacked into the environment's site-packages and
    recorded in conda-meta; a package no channel has is refused like conda does."""
    www, url = http_server
    hello = conda_channel.noarch_python_package(
        tmp_path, "jf-hello", "1.2", {"jf_hello/__init__.py": b"GREETING = 'from the channel'\n"})
    older = conda_channel.noarch_python_package(
        tmp_path, "jf-hello", "1.0", {"jf_hello/__init__.py": b"GREETING = 'old'\n"})
    conda_channel.write_channel(www / "channel", [hello, older])
    prefix, env = tmp_path / "conda", tmp_path / "home/kernel-env"
    runner = LocalRunner()
    assert runner.run(f"bash {installer.path} -b -p {prefix}").ok
    (tmp_path / "condarc").write_text(f"channels:\n  - {url}/channel  # the deploy's\n")
    conda = f"env CONDARC={tmp_path / 'condarc'} HOME={tmp_path / 'home'} {prefix}/bin/conda"
    made = runner.run(f"{conda} create --yes --quiet --prefix {env} python")
    assert made.ok, made.stderr
    assert f"# cmd: {prefix}/bin/conda create" in (env / "conda-meta/history").read_text()

    got = runner.run(f"{conda} install --yes --prefix {env} jf-hello")
    assert got.ok, got.stderr
    assert f"{url}/channel/noarch::jf-hello-1.2-pyhd8ed1ab_0" in got.stdout
    assert "Executing transaction: done" in got.stdout
    said = runner.run(f"{env}/bin/python -c 'import jf_hello; print(jf_hello.GREETING, jf_hello.__file__)'")
    assert said.stdout.startswith(f"from the channel {env}/lib/python3"), said.stderr
    record = json.loads((env / "conda-meta/jf-hello-1.2-pyhd8ed1ab_0.json").read_text())
    assert record["channel"] == f"{url}/channel" and record["files"][0].endswith(
        "site-packages/jf_hello/__init__.py")
    again = runner.run(f"{conda} install --yes --prefix {env} jf-hello")
    assert "All requested packages already installed" in again.stdout

    pinned = runner.run(f"{conda} install --yes --prefix {env} jf-hello=1.0")
    assert pinned.ok, pinned.stderr
    assert runner.run(f"{env}/bin/python -c 'import jf_hello; print(jf_hello.GREETING)'").stdout == "old\n"
    assert sorted(p.name for p in (env / "conda-meta").glob("jf-hello-*")) == ["jf-hello-1.0-pyhd8ed1ab_0.json"]

    package = www / "channel/noarch" / hello.name          # changed on the server after indexing
    package.write_bytes(package.read_bytes() + b"tampered")
    refused = runner.run(f"{conda} install --yes --prefix {env} jf-hello=1.2")
    assert refused.rc == 1 and "CondaVerificationError: " in refused.stderr
    assert f"/noarch/{hello.name} has sha256 " in refused.stderr
    assert sorted(p.name for p in (env / "conda-meta").glob("jf-hello-*")) == ["jf-hello-1.0-pyhd8ed1ab_0.json"]

    missing = runner.run(f"{conda} install --yes --prefix {env} jf-nowhere")
    assert missing.rc == 1
    assert "PackagesNotFoundError: The following packages are not available from current " \
           f"channels:\n\n  - jf-nowhere\n\nCurrent channels:\n\n  - {url}/channel/linux-64" in missing.stderr
