"""Root never follows a link someone else could have planted: each file state refuses a
path with such a link on its way (facts in, one line out, nothing sent), in a dry run
too, and makes every change through jupyterfab/engine/nofollow.py, whose own refusal (a link
planted after the facts were read) fails the state the same way. Then nofollow.py and
the Stat probe for real, on this machine's file system."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
import unit_support
from unit_support import LocalRunner

from jupyterfab.engine import nofollow as program
from jupyterfab.engine.facts import gather
from jupyterfab.engine.facts.files import FileInfo, LinkTarget, Stat
from jupyterfab.engine.result import Result
from jupyterfab.engine.runner import CmdResult
from jupyterfab.engine.shell import nofollow
from jupyterfab.engine.states import REGISTRY
from jupyterfab.engine.states.base import Call, Context, Probe, Run
from jupyterfab.engine.states.tls import Pair

OK = CmdResult(0, "", "")
NOTEBOOKS = "/home/jupyter/notebooks"
TARGET = "/usr/local/sbin"
PREFIX = "python3 -I -S -c <nofollow> "


def make_call(fun: str, name: str, facts: dict, *, test=False, prepared=None, **args) -> Call:
    spec = REGISTRY[fun]
    name, args = spec.normalize(name, args)
    ctx = Context("h", files_dir=Path("/nonexistent"))
    return Call("sid", fun, name, args, ctx, test, facts, prepared)


def drive(call: Call, answers=()) -> tuple[list, Result]:
    """The state run with ``answers`` to its operations in order (then success, or the
    link's target for a LinkTarget probe): (operations, result)."""
    return unit_support.drive(call, answers,
                              default=lambda op: TARGET if isinstance(op.fact, LinkTarget) else None)


def prepared(fun: str, name: str, **args):
    """What the state's ``prepare`` makes of these arguments (a rendered file, a tree)."""
    spec = REGISTRY[fun]
    return spec.prepare(*spec.normalize(name, args), Context("h", files_dir=Path("/nonexistent")))


def planted(link: str) -> FileInfo:
    return FileInfo("link", is_link=True, link=link)


def refused_before_anything_is_sent(call: Call, link: str) -> Result:
    ops, result = drive(call)
    assert ops == [Probe(LinkTarget(link))], ops       # its target, for the words; nothing else
    assert result.ok is False and not result.changes
    assert "\n" not in result.comment
    return result


def refused_by_the_host(fun: str, name: str, facts: dict, at: int = 0, **args) -> Result:
    """The facts show no link; one is planted before the change: nofollow refuses."""
    line = f"{name} is a symbolic link (to /etc); not changing it"
    answers = [OK] * at + [CmdResult(program.REFUSED, "", f"{line}\n")]
    ops, result = drive(make_call(fun, name, facts, **args), answers)
    assert result.ok is False and result.comment == line, result.comment
    assert len(ops) == at + 1
    return result


# --- each state, the link in its facts ------------------------------------------------

@pytest.mark.parametrize("test", [False, True], ids=["apply", "dry run"])
def test_directory_refuses_a_linked_path_and_a_linked_folder_above_it(test):
    facts = {"path": planted(NOTEBOOKS), "parent": FileInfo("directory", 0o750, "jupyter", "jupyter")}
    call = make_call("file.directory", NOTEBOOKS, facts, test=test, user="jupyter", group="jupyter",
                     mode="0750", makedirs=True)
    result = refused_before_anything_is_sent(call, NOTEBOOKS)
    assert result.comment == f"{NOTEBOOKS} is a symbolic link (to {TARGET}); not changing it"
    call = make_call("file.directory", f"{NOTEBOOKS}/work", {"path": planted(NOTEBOOKS), "parent": planted(NOTEBOOKS)},
                     test=test, mode="0700")
    result = refused_before_anything_is_sent(call, NOTEBOOKS)
    assert result.comment == f"{NOTEBOOKS} is a symbolic link (to {TARGET}); not changing {NOTEBOOKS}/work"


@pytest.mark.parametrize("test", [False, True], ids=["apply", "dry run"])
def test_managed_refuses_a_linked_file_and_a_linked_folder_above_it(test):
    conf = "/home/jupyter/.config/pip/pip.conf"
    content = prepared("file.managed", conf, contents="x")
    for link in (conf, "/home/jupyter/.config"):
        call = make_call("file.managed", conf, {"path": planted(link), "parent": planted(link)},
                         test=test, prepared=content, contents="x", mode="0644", makedirs=True)
        result = refused_before_anything_is_sent(call, link)
        assert result.comment.startswith(f"{link} is a symbolic link (to {TARGET}); not changing ")


@pytest.mark.parametrize("test", [False, True], ids=["apply", "dry run"])
def test_absent_refuses_a_linked_folder_above_and_removes_a_link_in_place_of_the_path(test):
    call = make_call("file.absent", f"{NOTEBOOKS}/old", {"path": planted(NOTEBOOKS)}, test=test)
    result = refused_before_anything_is_sent(call, NOTEBOOKS)
    assert result.comment.endswith(f"not changing {NOTEBOOKS}/old")
    # the link itself is what goes (rm never follows it): that is what "absent" asks
    ops, result = drive(make_call("file.absent", NOTEBOOKS, {"path": planted(NOTEBOOKS)}, test=test))
    if test:
        assert ops == [] and result.ok is None
    else:
        assert [op.command.display for op in ops] == [f"{PREFIX}rm {NOTEBOOKS}"] and result.ok


@pytest.mark.parametrize("test", [False, True], ids=["apply", "dry run"])
def test_recurse_refuses_a_linked_target(test, tmp_path):
    (tmp_path / "w.whl").write_bytes(b"w")
    tree = prepared("file.recurse", "/opt/wheelhouse", source=str(tmp_path))
    call = make_call("file.recurse", "/opt/wheelhouse", {"path": planted("/opt/wheelhouse"),
                                                          "manifest": planted("/opt/wheelhouse")},
                     test=test, prepared=tree, source=str(tmp_path))
    refused_before_anything_is_sent(call, "/opt/wheelhouse")


@pytest.mark.parametrize("test", [False, True], ids=["apply", "dry run"])
def test_tls_pair_refuses_a_linked_pair(test):
    link = "/etc/ssl/jupyterfab/x"
    call = make_call("tls.pair", link, {"link": planted(link), "certificate": planted(link),
                                         "key": planted(link)}, test=test, prepared=Pair(b"c", b"k"),
                     certificate_source="c.j2", key_source="k.j2")
    refused_before_anything_is_sent(call, link)


# --- each state, a link planted after the facts: nofollow's refusal -------------------

def test_every_state_fails_in_nofollows_one_line_when_it_refuses_on_the_host(tmp_path):
    refused_by_the_host("file.directory", NOTEBOOKS, {"path": None, "parent": FileInfo("directory")},
                        user="jupyter")
    refused_by_the_host("file.directory", NOTEBOOKS, {"path": FileInfo("directory", 0o755, "root", "root"),
                                                       "parent": FileInfo("directory")}, user="jupyter")
    content = prepared("file.managed", "/etc/x", contents="x")
    refused_by_the_host("file.managed", "/etc/x", {"path": None, "parent": FileInfo("directory")},
                        prepared=content, contents="x")
    refused_by_the_host("file.absent", "/etc/x", {"path": FileInfo("file")})
    (tmp_path / "w.whl").write_bytes(b"w")
    tree = prepared("file.recurse", "/opt/w", source=str(tmp_path))
    refused_by_the_host("file.recurse", "/opt/w", {"path": None, "manifest": None}, prepared=tree,
                        source=str(tmp_path))


def test_every_change_a_file_state_makes_goes_through_nofollow(tmp_path):
    """No bare chmod, chown, mkdir, mv, rm or tar of a path: each is nofollow's (a check
    command reads the candidate and changes nothing)."""
    sha = hashlib.sha256(b"x\n").hexdigest()
    content = prepared("file.managed", "/etc/x", contents="x")
    (tmp_path / "w.whl").write_bytes(b"w")
    tree = prepared("file.recurse", "/opt/w", source=str(tmp_path), clean=True)
    calls = [
        make_call("file.directory", "/srv/d", {"path": None, "parent": None}, makedirs=True, mode="0750"),
        make_call("file.directory", "/srv/d", {"path": FileInfo("directory", 0o755, "a", "a"),
                                               "parent": FileInfo("directory")}, user="b"),
        make_call("file.managed", "/etc/x", {"path": None, "parent": None}, prepared=content, contents="x",
                  makedirs=True),
        make_call("file.managed", "/etc/x", {"path": FileInfo("file", 0o600, "r", "r", sha),
                                             "parent": FileInfo("directory")}, prepared=content,
                  contents="x", mode="0644"),
        make_call("file.managed", "/etc/x", {"path": FileInfo("file", 0o600, "r", "r", "0" * 64),
                                             "parent": FileInfo("directory")}, prepared=content,
                  contents="x", check_cmd="true"),
        make_call("file.absent", "/etc/x", {"path": FileInfo("file")}),
        make_call("file.recurse", "/opt/w", {"path": FileInfo("directory"), "manifest": None},
                  prepared=tree, source=str(tmp_path), clean=True, user="u"),
    ]
    answers = {"/opt/w": [{"gone.whl": "0" * 64}]}
    for call in calls:
        ops, result = drive(call, answers.get(call.name, []))
        assert result.ok, result.comment
        runs = [op.command.display for op in ops if isinstance(op, Run)]
        assert runs, call
        for text in runs:
            assert text.startswith(PREFIX) or text.startswith("sh -c 'true "), text


# --- nofollow.py on this machine's file system ---------------------------------------

def nofollow_here(*ops: str, stdin: bytes = b"", verb: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", nofollow(*ops, verb=verb).text], input=stdin, capture_output=True)


def shared_folder_with_a_link(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A folder anyone may write (as a user's home is theirs), holding a link into a
    tree of this user's: what a notebook user plants."""
    canary = tmp_path / "canary"
    (canary / "sub").mkdir(parents=True)
    (canary / "a").write_text("canary")
    os.chmod(canary, 0o751)
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, 0o777)
    (home / "notebooks").symlink_to(canary)
    return canary, home, home / "notebooks"


def tree_state(root: Path) -> list[tuple]:
    return sorted((str(p), p.lstat().st_mode, p.lstat().st_uid, p.read_bytes() if p.is_file() else b"")
                  for p in [root, *root.rglob("*")])


def test_trusted_is_a_link_of_ones_own_in_a_folder_only_one_writes():
    assert program.trusted(0, 0, 0o755, 0)
    assert not program.trusted(1000, 0, 0o755, 0)         # someone else's link
    assert not program.trusted(0, 1000, 0o755, 0)         # in someone else's folder
    assert not program.trusted(0, 0, 0o775, 0)            # in a folder a group writes
    assert not program.trusted(0, 0, 0o1777, 0)           # /tmp
    assert program.refusal("/h/n", "/etc", "/h/n") == "/h/n is a symbolic link (to /etc); not changing it"
    assert program.refusal("/h/n", "\x1b[2J", "/h/n/x", "reading") == \
        "/h/n is a symbolic link (to '\\x1b[2J'); not reading /h/n/x"


def test_nofollow_refuses_a_planted_link_at_the_path_and_above_it_and_changes_nothing(tmp_path):
    canary, home, link = shared_folder_with_a_link(tmp_path)
    before = tree_state(canary)
    for ops, refused in [(("dir", str(link), "0750", "", "", ""), str(link)),
                         (("dir", f"{link}/sub/x", "0700", "", "", "p"), str(link)),
                         (("meta", f"{link}/a", "0666", "", ""), str(link)),
                         (("put", f"{link}/a", "0666", "", "", ""), str(link)),
                         (("mv", f"{link}/a", f"{link}/b"), str(link)),
                         (("rm", f"{link}/sub"), str(link)),
                         (("run", str(link), "need", "2", "touch", "planted"), str(link))]:
        done = nofollow_here(*ops, stdin=b"new")
        said = done.stderr.decode()
        assert done.returncode == program.REFUSED, (ops, said)
        assert said.startswith(f"{refused} is a symbolic link (to {canary}); not changing ") and \
            said.count("\n") == 1, said
        assert tree_state(canary) == before, ops


def test_nofollow_follows_a_link_of_its_own_in_a_folder_only_it_writes(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    os.chmod(tmp_path, 0o755)
    (tmp_path / "own").symlink_to("real")
    done = nofollow_here("dir", f"{tmp_path}/own/d", "0700", "", "", "", "put", f"{tmp_path}/own/d/f",
                         "0640", "", "", "", stdin=b"data")
    assert done.returncode == 0, done.stderr
    assert (real / "d" / "f").read_bytes() == b"data" and (real / "d").stat().st_mode & 0o777 == 0o700
    assert (real / "d" / "f").stat().st_mode & 0o777 == 0o640


def test_nofollow_changes(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    done = nofollow_here("dir", f"{home}/a/b", "0750", "", "", "p",
                         "put", f"{home}/a/b/.f.tmp", "0640", "", "", "",
                         "mv", f"{home}/a/b/.f.tmp", f"{home}/a/b/f",
                         "rm", f"{home}/a/b/.f.rejected",
                         "run", f"{home}/a", "need", "3", "touch", "--", "made-here", stdin=b"content")
    assert done.returncode == 0, done.stderr
    assert (home / "a" / "b" / "f").read_bytes() == b"content"
    assert (home / "a" / "b").stat().st_mode & 0o777 == 0o750
    assert (home / "a" / "made-here").exists() and not (home / "a" / "b" / ".f.tmp").exists()
    # rm: a link goes, never what it points to; a tree goes whole; absent is fine
    (home / "keep").mkdir()
    (home / "keep" / "k").write_text("k")
    (home / "l").symlink_to(home / "keep")
    done = nofollow_here("rm", f"{home}/l", "rm", f"{home}/a", "rm", f"{home}/nothing/here")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in home.iterdir()) == ["keep"] and (home / "keep" / "k").exists()
    # a failure is one line, and the rest is not done
    done = nofollow_here("dir", f"{home}/x/y", "", "", "", "", "dir", f"{home}/z", "", "", "", "")
    assert done.returncode == 1 and done.stderr.decode() == f"{home}/x: No such file or directory\n"
    assert not (home / "z").exists()


def test_stat_reports_a_planted_link_and_never_what_is_beyond_it(tmp_path):
    canary, home, link = shared_folder_with_a_link(tmp_path)
    (tmp_path / "own").symlink_to("canary")
    os.chmod(tmp_path, 0o755)
    wanted = [Stat(str(link)), Stat(f"{link}/a", True), Stat(f"{link}/nothing"), Stat(f"{tmp_path}/own/a")]
    values = gather(LocalRunner(), wanted)
    assert values[wanted[0]] == FileInfo("link", is_link=True, link=str(link))
    assert values[wanted[1]] == FileInfo("link", is_link=True, link=str(link))
    assert values[wanted[2]] == FileInfo("link", is_link=True, link=str(link))
    own = values[wanted[3]]
    assert own.is_file and own.link == "" and not own.is_link     # through its own link: a file
    assert gather(LocalRunner(), [LinkTarget(str(link))])[LinkTarget(str(link))] == str(canary)
