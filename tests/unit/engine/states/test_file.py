"""file.managed, .directory and .absent on their own: given the path's stat (and
the old content), the uploads and commands they yield and what they report. A
no-op, a dry run's diff, check_cmd and hostile names are scenarios
(scenarios/*.yaml); the generated shell run for real is test_file_local_shell.py."""

from __future__ import annotations

import hashlib

import pytest
from unit_support import drive, make_call, texts

from jupyterfab.engine.facts.files import FileInfo
from jupyterfab.engine.shell import Secret
from jupyterfab.engine.sls import SlsError
from jupyterfab.engine.states import REGISTRY
from jupyterfab.engine.states.base import Context, Probe

# --- file.managed ------------------------------------------------------------------

ROOT_DIR = FileInfo("directory", 0o755, "root", "root")


def file_facts(info: FileInfo | None, parent=ROOT_DIR):
    return {"path": info, "parent": parent}


def test_managed_mode_or_owner_only_is_chmod_chown_without_upload():
    sha = hashlib.sha256(b"x\n").hexdigest()
    call = make_call("file.managed", "/etc/x", file_facts(FileInfo("file", 0o600, "root", "root", sha)),
                     contents="x", mode="0640", group="www-data")
    ops, result = drive(call)
    assert texts(ops) == ["python3 -I -S -c <nofollow> meta /etc/x 0640 '' www-data"]
    assert result.changes == {"mode": {"old": "0600", "new": "0640"},
                              "group": {"old": "root", "new": "www-data"}}


def test_managed_new_file_is_atomic_and_inherits_nothing():
    call = make_call("file.managed", "/etc/x", file_facts(None), contents="x", user="jupyter")
    ops, result = drive(call)
    [op] = ops          # one command: written beside it, owner and mode set, renamed over it
    tmp = op.command.parts[6]
    assert tmp.startswith("/etc/.x.jupyterfab-") and tmp.endswith(".tmp") and op.stdin == b"x\n"
    assert texts(ops) == [f"python3 -I -S -c <nofollow> put {tmp} 0644 jupyter '' '' "
                          f"mv {tmp} /etc/x rm /etc/.x.rejected"]
    assert result.changes == {"diff": "New file"}


def test_managed_replacement_keeps_old_owner_and_mode_when_not_set():
    call = make_call("file.managed", "/etc/x",
                     file_facts(FileInfo("file", 0o640, "jupyter", "www-data", "0" * 64)), contents="new")
    ops, result = drive(call, ["old\n"])
    assert isinstance(ops[0], Probe)          # the old content, for the diff
    assert f"put {ops[1].command.parts[6]} 0640 jupyter www-data '' mv" in texts(ops)[1]
    assert result.changes["diff"].splitlines()[2:] == ["@@ -1 +1 @@", "-old", "+new"]


def test_managed_hides_diff_for_show_changes_false_and_secrets():
    info = FileInfo("file", 0o600, "root", "root", "0" * 64)
    call = make_call("file.managed", "/etc/hash", file_facts(info), contents="h", show_changes=False,
                     test=True)
    ops, result = drive(call)
    assert ops == [] and result.ok is None and "not shown" in result.changes["diff"]
    call = make_call("file.managed", "/etc/token", file_facts(info), contents=Secret("s3cr3t"), test=True)
    ops, result = drive(call)
    assert ops == [] and "not shown" in result.changes["diff"] and "s3cr3t" not in str(result)


def test_managed_refuses_symlinks_and_directories():
    call = make_call("file.managed", "/etc/x", file_facts(FileInfo("file", 0o644, "r", "r", "0" * 64,
                                                                   is_link=True)), contents="x")
    assert drive(call)[1].ok is False
    call = make_call("file.managed", "/etc/x", file_facts(FileInfo("directory", 0o755, "r", "r")),
                     contents="x")
    assert "not a regular file" in drive(call)[1].comment


def test_managed_missing_parent():
    call = make_call("file.managed", "/etc/app/x", file_facts(None, parent=None), contents="x")
    ops, result = drive(call)
    assert ops == [] and result.ok is False and "makedirs" in result.comment
    call = make_call("file.managed", "/etc/app/x", file_facts(None, parent=None), contents="x",
                     makedirs=True)
    assert " put /etc/app/.x.jupyterfab-" in texts(drive(call)[0])[0]
    assert texts(drive(call)[0])[0].split(" mv ")[0].endswith(" p")       # the folders above it too
    call = make_call("file.managed", "/etc/app/x", file_facts(None, parent=None), contents="x", test=True)
    assert drive(call)[1].ok is None     # an earlier state may create it


def test_managed_template_render_error_names_template_and_line(tmp_path):
    (tmp_path / "site.j2").write_text("a\n{{ port }}\n")
    ctx = Context("h", files_dir=tmp_path)
    spec = REGISTRY["file.managed"]
    name, args = spec.normalize("/etc/x", {"source": "site.j2"})
    with pytest.raises(SlsError, match=rf"^{tmp_path.name}/site.j2, line 2: undefined variable"):
        spec.prepare(name, args, ctx)


def test_managed_template_with_secret_renders_it_and_hides_diff(tmp_path):
    (tmp_path / "cfg.j2").write_text("token = {{ token }}\nport = {{ port }}\n")
    ctx = Context("h", vars={"token": Secret("t0k"), "port": 1}, files_dir=tmp_path)
    call = make_call("file.managed", "/etc/cfg", file_facts(FileInfo("file", 0o600, "r", "r", "0" * 64)),
                     ctx=ctx, source="cfg.j2", context={"port": 2})
    assert call.prepared.data == b"token = t0k\nport = 2\n"
    ops, result = drive(call)
    assert not any(isinstance(op, Probe) for op in ops) and "not shown" in result.changes["diff"]


# --- file.directory / absent -------------------------------------------------------

def test_directory_fixes_only_what_differs_and_refuses_a_file():
    # creating one (mkdir -m, chown) is scenarios/nginx_stack.yaml's case
    call = make_call("file.directory", "/srv/d", file_facts(FileInfo("directory", 0o755, "j", "j")),
                     mode="0750", user="j", group="j")
    assert texts(drive(call)[0]) == ["python3 -I -S -c <nofollow> dir /srv/d 0750 '' '' ''"]
    call = make_call("file.directory", "/srv/d", file_facts(FileInfo("file", 0o644, "j", "j")))
    assert drive(call)[1].ok is False


def test_absent():
    call = make_call("file.absent", "/etc/nginx/sites-enabled/default", {"path": None})
    ops, result = drive(call)
    assert ops == [] and result.comment == "/etc/nginx/sites-enabled/default is absent"
    call = make_call("file.absent", "/etc/nginx/sites-enabled/default",
                     {"path": FileInfo("file", 0o644, "r", "r")})
    assert texts(drive(call)[0]) == ["python3 -I -S -c <nofollow> rm /etc/nginx/sites-enabled/default"]
