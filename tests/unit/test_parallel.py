"""Fan-outs size themselves by the fleet and the controller, not a fixed 8."""

from jupyterfab.envbundle import payload
from jupyterfab.parallel import CEILING, fleet_workers


def test_every_host_of_a_small_fleet_at_once_on_a_small_controller():
    assert fleet_workers(1, 2) == 1
    assert fleet_workers(4, 2) == 4
    assert fleet_workers(16, 2) == 16          # a fixed 8 would take two rounds


def test_bounded_by_the_controllers_cores_and_a_ceiling():
    assert fleet_workers(100, 1) == 8
    assert fleet_workers(100, 2) == 16
    assert fleet_workers(1000, 64) == CEILING
    assert fleet_workers(0, 2) == 1


def test_a_bundle_is_read_once_for_all_hosts(tmp_path):
    bundle = tmp_path / "env-a.tar.gz"
    bundle.write_bytes(b"x" * 1000)
    first = payload(bundle)
    assert payload(bundle) is first            # one copy in memory, however many hosts
    other = tmp_path / "env-b.tar.gz"
    other.write_bytes(b"y")
    assert payload(other) == b"y"



def test_a_tree_is_packed_once_for_all_hosts_that_need_the_same_files(tmp_path):
    import tarfile

    from jupyterfab.states.file import local_tree, shared_tar_stream
    (tmp_path / "a.whl").write_bytes(b"a" * 100)
    (tmp_path / "b.whl").write_bytes(b"b" * 100)
    tree = local_tree(tmp_path, "settings")
    first = shared_tar_stream(tree, ["a.whl", "b.whl"], 0o644, 0o755)
    assert shared_tar_stream(tree, ["b.whl", "a.whl"], 0o644, 0o755) is first   # one copy
    only_b = shared_tar_stream(tree, ["b.whl"], 0o644, 0o755)                    # what a host lacks
    assert tarfile.open(fileobj=__import__("io").BytesIO(only_b)).getnames() == ["b.whl"]
    (tmp_path / "b.whl").write_bytes(b"B" * 100)                                  # a new wheel
    changed = local_tree(tmp_path, "settings")
    fresh = shared_tar_stream(changed, ["a.whl", "b.whl"], 0o644, 0o755)
    assert fresh is not first and b"B" * 100 in fresh
