"""Fan-outs size themselves by the fleet and the controller, not a fixed 8."""

from jupyterfab.engine.parallel import CEILING, fleet_workers
from jupyterfab.engine.payload import shared as payload


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

    from jupyterfab.engine.states.file import local_tree, shared_tar_stream
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


def all_at_once(count, work):
    """``work()`` in ``count`` threads released together, as a fleet's hosts reach it."""
    import threading

    start, errors = threading.Barrier(count), []

    def one():
        start.wait()
        try:
            work()
        except Exception as exc:        # a thread's failure fails the test
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_fleet_hashes_each_local_file_once_when_its_hosts_ask_together(tmp_path, monkeypatch):
    import hashlib
    import time

    from jupyterfab.engine.states import file as file_state
    wheel = tmp_path / "a.whl"
    wheel.write_bytes(b"a" * 1000)
    reads, sha256 = [], hashlib.sha256

    class SlowSha256:                   # a big wheel: long enough for every host to ask
        def __init__(self):
            self.inner = sha256()
            reads.append(1)

        def update(self, data):
            time.sleep(0.05)
            self.inner.update(data)

        def hexdigest(self):
            return self.inner.hexdigest()

    monkeypatch.setattr(file_state.hashlib, "sha256", SlowSha256)
    all_at_once(16, lambda: file_state.file_sha256(wheel))
    assert len(reads) == 1


def test_a_fleet_compiles_each_template_once_when_its_hosts_render_together(tmp_path, monkeypatch):
    import time

    import jinja2

    from jupyterfab.engine import templates
    (tmp_path / "site.j2").write_text("server {{ name }}\n")
    compiled = []
    compile_ = jinja2.Environment.compile

    def slow_compile(self, *args, **kwargs):
        compiled.append(1)
        time.sleep(0.05)
        return compile_(self, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "compile", slow_compile)
    out = []
    all_at_once(16, lambda: out.append(templates.render_template(tmp_path, "site.j2", {"name": "a"})))
    assert out == ["server a\n"] * 16
    assert len(compiled) == 1
