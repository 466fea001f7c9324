"""The server extension's wheel, built on the controller: same sources, same bytes;
changed sources, a new version (so hosts install it); a wheel pip can read."""

import shutil
import zipfile

from jupyterfab.stack.envs import serverext


def test_the_same_sources_build_the_same_bytes_and_a_change_is_a_new_version(tmp_path):
    sources = tmp_path / "extensions"
    shutil.copytree(serverext.SOURCES / serverext.NODELAY, sources / serverext.NODELAY)
    name, data = serverext.build_wheel(sources=sources)
    assert serverext.build_wheel(sources=sources) == (name, data)
    assert name.startswith("jupyterfab_nodelay-1.0.0+") and name.endswith("-py3-none-any.whl")
    edited = tmp_path / "edited"
    shutil.copytree(sources, edited)
    module = edited / serverext.NODELAY / "jupyterfab_nodelay/__init__.py"
    module.write_text(module.read_text() + "\n# changed\n")
    changed, _ = serverext.build_wheel(sources=edited)
    assert changed != name and changed.startswith("jupyterfab_nodelay-1.0.0+")


def test_the_wheel_holds_the_module_and_metadata_pip_reads(tmp_path):
    path = serverext.wheel(cache=tmp_path)
    assert path.parent.parent == tmp_path and list(path.parent.iterdir()) == [path]   # alone: uploaded as is
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        version = path.name.split("-")[1]
        metadata = wheel.read(f"jupyterfab_nodelay-{version}.dist-info/METADATA").decode()
        record = wheel.read(f"jupyterfab_nodelay-{version}.dist-info/RECORD").decode()
    assert "jupyterfab_nodelay/__init__.py" in names
    assert f"Version: {version}" in metadata and "Requires-Dist: jupyter_server>=2.14,<3" in metadata
    assert all(any(line.startswith(n + ",") for line in record.splitlines()) for n in names)


def test_the_requirement_points_at_the_wheel_in_a_folder():
    name = "jupyterfab_nodelay-1.0.0+abc-py3-none-any.whl"
    assert serverext.requirement(name, "/opt/jupyterfab/extensions/") == \
        "jupyterfab-nodelay @ file:///opt/jupyterfab/extensions/jupyterfab_nodelay-1.0.0+abc-py3-none-any.whl"
    assert serverext.wheel_name() == serverext.wheel().name
