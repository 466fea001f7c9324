"""File states applied for real, by the local /bin/sh, inside a temp directory:
the generated shell (quoting, atomic swap, rollback, tar) does what the fake
host assumes. No root needed."""

from __future__ import annotations

import os
import shutil

import pytest
from unit_support import LocalRunner, by_id

from jupyterfab.engine.sls import SlsError

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("stat", "sha256sum", "tar", "ln", "mv", "env")),
    reason="needs GNU coreutils and tar")


def test_managed_file_atomic_update_and_no_op(project, tmp_path):
    target = tmp_path / "etc" / "app.conf"
    target.parent.mkdir()
    target.write_text("old\n")
    os.chmod(target, 0o640)
    inode = target.stat().st_ino
    project.vars = {"value": "new"}
    project.sls(f"conf:\n  file.managed:\n    - name: {target}\n    - contents: '{{{{ value }}}}'\n")
    runner = LocalRunner()
    (result,) = project.apply(runner)
    assert result.ok and "-old\n+new" in result.changes["diff"]
    assert target.read_text() == "new\n" and target.stat().st_ino != inode   # replaced, not rewritten
    assert target.stat().st_mode & 0o777 == 0o640                            # kept its mode
    assert sorted(p.name for p in target.parent.iterdir()) == ["app.conf"]
    runner.calls.clear()
    (again,) = project.apply(runner)
    assert again.ok and not again.changed and len(runner.calls) == 1


def test_check_cmd_on_a_candidate_tree_never_puts_rejected_content_live(project, tmp_path):
    tree = tmp_path / "conf"
    (tree / "sites").mkdir(parents=True)
    target = tree / "sites" / "site.conf"
    target.write_text("good config\n")
    # like nginx.conf: an absolute include, which must read the candidate, not the live file
    (tree / "main.conf").write_text(f"include {target}\n")
    project.vars = {"body": "bad config"}
    project.sls(f"""\
site:
  file.managed:
    - name: {target}
    - contents: "{{{{ body }}}}"
    - check_tree: {tree}
    - check_cmd: >-
        f=$(sed -n 's/^include //p' {{tree}}/main.conf);
        case $f in {tree}/*) echo "read the live file" >&2; exit 2;; esac;
        grep -q good "$f" || {{ echo "config test failed - no good" >&2; exit 1; }}
""")
    (result,) = project.apply(LocalRunner())
    assert result.ok is False and result.stderr == "config test failed - no good"
    assert "left unchanged" in result.comment
    assert target.read_text() == "good config\n"
    assert (tree / "sites" / ".site.conf.rejected").read_text() == "bad config\n"
    assert sorted(p.name for p in (tree / "sites").iterdir()) == [".site.conf.rejected", "site.conf"]

    project.vars = {"body": "good config, improved"}
    (result,) = project.apply(LocalRunner())
    assert result.ok and target.read_text() == "good config, improved\n", result
    assert sorted(p.name for p in (tree / "sites").iterdir()) == ["site.conf"]
    assert (tree / "main.conf").read_text() == f"include {target}\n"     # the copy was remapped, not this


def test_check_tree_is_given_exactly_with_a_tree_check(project, tmp_path):
    project.sls(f"""\
site:
  file.managed:
    - name: {tmp_path}/site.conf
    - contents: x
    - check_cmd: nginx -t -c {{tree}}/nginx.conf
""")
    with pytest.raises(SlsError, match=r"line 2: .*check_tree: give it exactly when check_cmd uses \{tree\}"):
        project.apply(LocalRunner())


def test_check_cmd_on_the_temp_file(project, tmp_path):
    target = tmp_path / "settings.py"
    target.write_text("A = 1\n")
    project.vars = {"code": "A = ("}
    project.sls(f"""\
settings:
  file.managed:
    - name: {target}
    - contents: "{{{{ code }}}}"
    - check_cmd: grep -qv '(' {{tmp}}
""")
    (result,) = project.apply(LocalRunner())
    assert result.ok is False and target.read_text() == "A = 1\n"
    assert (tmp_path / ".settings.py.rejected").read_text() == "A = (\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    project.vars = {"code": "A = 2"}
    (result,) = project.apply(LocalRunner())
    assert result.ok and result.comment == f"updated {target} (check_cmd passed)", result.comment
    assert target.read_text() == "A = 2\n" and not (tmp_path / ".settings.py.rejected").exists()


def test_hostile_values_stay_data_in_a_real_shell(project, tmp_path):
    evil = tmp_path / "x; touch PWNED1 #" / "$(touch PWNED2)"
    project.vars = {"evil_dir": str(evil), "evil_env": "$(touch PWNED3)`touch PWNED4`"}
    project.sls(f"""\
evil_dir:
  file.directory:
    - name: "{{{{ evil_dir }}}}"
    - makedirs: true
evil_file:
  file.managed:
    - name: "{{{{ evil_dir }}}}/; touch PWNED5"
    - contents: "{{{{ evil_env }}}}"
show_env:
  cmd.run:
    - name: printf %s "$GREETING"
    - cwd: {tmp_path}
    - env:
      - GREETING: "{{{{ evil_env }}}}"
""")
    results = by_id(project.apply(LocalRunner()))
    assert all(r.ok for r in results.values()), results
    assert evil.is_dir() and (evil / "; touch PWNED5").read_text() == "$(touch PWNED3)`touch PWNED4`\n"
    assert results["show_env"].changes["stdout"] == "$(touch PWNED3)`touch PWNED4`"
    for root, _dirs, files in os.walk(tmp_path):
        assert not [f for f in files if f.startswith("PWNED")], (root, files)
    assert not [f for f in os.listdir(".") if f.startswith("PWNED")]


def test_recurse_with_real_tar(project, tmp_path):
    src = project.files / "wheels"
    (src / "sub").mkdir(parents=True)
    (src / "a.whl").write_bytes(b"A" * 1000)
    (src / "sub" / "b.whl").write_bytes(b"B")
    dest = tmp_path / "remote" / "wheelhouse"
    dest.mkdir(parents=True)
    (dest / "stale.whl").write_bytes(b"old")
    project.sls(f"w:\n  file.recurse:\n    - name: {dest}\n    - source: wheels\n    - clean: true\n")
    runner = LocalRunner()
    (result,) = project.apply(runner)
    assert result.ok and result.changes == {"added": ["a.whl", "sub/b.whl"], "removed": ["stale.whl"]}
    assert (dest / "a.whl").read_bytes() == b"A" * 1000 and (dest / "sub" / "b.whl").read_bytes() == b"B"
    assert not (dest / "stale.whl").exists() and (dest / ".jupyterfab-manifest").is_file()
    assert (dest / "a.whl").stat().st_mode & 0o777 == 0o644

    runner.calls.clear()
    (again,) = project.apply(runner)
    assert not again.changed and len(runner.calls) == 1

    (src / "sub" / "b.whl").write_bytes(b"B2")
    (third,) = project.apply(runner)
    assert third.changes == {"changed": ["sub/b.whl"]} and (dest / "sub" / "b.whl").read_bytes() == b"B2"
