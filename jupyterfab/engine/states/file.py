"""file.managed, file.directory, file.absent, file.recurse."""

from __future__ import annotations

import difflib
import hashlib
import io
import os
import posixpath
import shlex
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from jupyterfab.engine import nofollow as nofollow_program
from jupyterfab.engine import quoting
from jupyterfab.engine.errors import SlsError
from jupyterfab.engine.facts.files import MANIFEST_NAME, FileContent, FileInfo, LinkTarget, Stat, TreeHashes
from jupyterfab.engine.shell import Command, Secret, cmd, nofollow, nofollow_run
from jupyterfab.engine.states.base import (
    Arg,
    ArgError,
    Call,
    Context,
    Probe,
    Run,
    abs_path,
    boolean,
    mapping,
    mode,
    state,
    string,
    text,
    user_name,
)
from jupyterfab.engine.templates import describe_template_error, render_template

DIFF_MAX_LINES = 400


# --- helpers shared by the file states -------------------------------------

def octal(value: int) -> str:
    return f"{value:04o}"


def owner_spec(user: str | None, group: str | None) -> str | None:
    if not user and not group:
        return None
    return f"{user or ''}:{group}" if group else user


def temp_path(name: str, sha256: str) -> str:
    """Next to the target (same filesystem, so the final ``mv`` is atomic), hidden,
    and named after the content so a retried run reuses it."""
    head, tail = posixpath.split(name)
    return posixpath.join(head, f".{tail}.jupyterfab-{sha256[:12]}.tmp")


# Hidden, because the directory is often read with a glob that would pick it
# up: nginx's `include sites-enabled/*` (glob(3) skips dot files), cron.d,
# sudoers.d, logrotate.d. A visible jupyter.conf.rejected there would break the
# next nginx start with the very content that was rejected.
def rejected_path(name: str) -> str:
    head, tail = posixpath.split(name)
    return posixpath.join(head, f".{tail}.rejected")


def metadata_changes(info: FileInfo | None, args: dict) -> dict[str, dict]:
    """mode/user/group that differ from what the state asks for (only those it asks for)."""
    if info is None:
        return {}
    changes = {}
    if args.get("mode") is not None and info.mode != args["mode"]:
        changes["mode"] = {"old": octal(info.mode), "new": octal(args["mode"])}
    for key in ("user", "group"):
        if args.get(key) and getattr(info, key) != args[key]:
            changes[key] = {"old": getattr(info, key), "new": args[key]}
    return changes


def meta_args(args: dict, changes: dict | None = None) -> tuple[str, str, str]:
    """nofollow's MODE USER GROUP: what the state sets ("" leaves it), or with
    ``changes`` only the mode and owner that ``metadata_changes`` found wrong."""
    mode_wrong = changes is None or "mode" in changes
    owner_wrong = changes is None or bool({"user", "group"} & changes.keys())
    return (octal(args["mode"]) if mode_wrong and args["mode"] is not None else "",
            (args["user"] or "") if owner_wrong else "", (args["group"] or "") if owner_wrong else "")


# --- the engine rule: root never follows a link someone else could have planted ---
#
# A path whose facts show such a link on its way (Stat's ``link``) is refused before
# anything is sent, in a dry run too; every change is made by jupyterfab/engine/nofollow.py,
# which walks the path again without following such a link, in the same command as the
# change, and refuses the same way if one was planted since.

def refuse_link(call: Call, link: str):
    """The one-line failure naming ``link`` (its target read for the words)."""
    target = yield Probe(LinkTarget(link))
    return call.fail(nofollow_program.refusal(link, target, call.name))


def change(call: Call, command: Command, **run):
    """Run a nofollow command; None when it succeeded, else the failed Result (a
    refused link: its own one line)."""
    result = yield Run(command, check=False, **run)
    if result.ok:
        return None
    said = (result.stderr or result.stdout).strip()
    if result.rc == nofollow_program.REFUSED and said:
        call.changes.clear()        # refused before it changed anything
        return call.fail(said.splitlines()[-1])
    return call.command_failed(command, result)


def unified_diff(old: str, new: str, path: str) -> str:
    lines = list(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                      fromfile=path, tofile=path))
    if len(lines) > DIFF_MAX_LINES:
        lines = lines[:DIFF_MAX_LINES] + [f"... ({len(lines) - DIFF_MAX_LINES} more diff lines)\n"]
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in lines)


def parent_check(call: Call, parent: FileInfo | None, makedirs: bool):
    """None when the parent is usable (or will be made); else the Result to return."""
    parent_dir = posixpath.dirname(call.name)
    if parent is not None and not parent.is_dir:
        return call.fail(f"{parent_dir} exists and is not a directory")
    if parent is None and not makedirs:
        if call.test:  # an earlier state may create it; dry-run cannot know
            return None
        return call.fail(f"parent directory {parent_dir} does not exist (set makedirs: true)")
    return None


def _stat_facts(name: str, checksum: bool) -> dict:
    facts = {"path": Stat(name, checksum=checksum)}
    if name != "/":
        facts["parent"] = Stat(posixpath.dirname(name))
    return facts


# --- file.managed ------------------------------------------------------------

# $1 check_tree (a live directory), $2 the candidate file, $3 the target inside $1,
# $4 the check (shell text; $TREE is the copy). The check runs against a copy of
# the tree with the candidate in place of the target, every mention of the tree's
# path inside the copy pointing at the copy (nginx.conf's absolute includes), so
# nothing live is touched before it passed.
CANDIDATE_CHECK = r"""
set -e
cand=$(mktemp -d "${TMPDIR:-/tmp}/jupyterfab-candidate.XXXXXX"); trap 'rm -rf "$cand"' EXIT
cp -a "$1/." "$cand/"
rel="${3#"$1"/}"
mkdir -p "$cand/${rel%/*}"
rm -f "$cand/$rel"; cp "$2" "$cand/$rel"
grep -rlF -- "$1/" "$cand" | while IFS= read -r f; do sed -i "s|$1/|$cand/|g" "$f"; done
TREE="$cand" sh -c "$4"
"""


def check_command_for(check: str, tmp: str, name: str, tree: str | None) -> Command:
    """How check_cmd reads the candidate: ``{tmp}`` is the temp file, ``{tree}`` a
    copy of ``check_tree`` with the candidate in place; otherwise, as in Salt, the
    temp file's path is appended."""
    if "{tree}" in check:
        return cmd("sh", "-c", CANDIDATE_CHECK, "sh", tree, tmp, name, check.replace("{tree}", '"$TREE"'))
    if "{tmp}" in check:
        return cmd("sh", "-c", check.replace("{tmp}", shlex.quote(tmp)))
    return cmd("sh", "-c", f"{check} {shlex.quote(tmp)}")

@dataclass(frozen=True)
class Content:
    data: bytes
    sha256: str
    secret: bool          # a secret went into it: never show it in a diff


def render_source(source: str, ctx: Context, extra: dict | None = None) -> tuple[str, bool]:
    """Render ``files/<source>`` locally; returns (text, whether a Secret was used)."""
    used_secret = []
    escape = quoting.for_template(source)

    def reveal(value):
        if isinstance(value, Secret):
            used_secret.append(True)
            return value.reveal()
        return escape(value)

    try:
        rendered = render_template(ctx.files_dir, source, ctx.template_vars(extra), finalize=reveal)
    except Exception as exc:
        files_dir = Path(ctx.files_dir)
        raise SlsError(describe_template_error(exc, files_dir / source, files_dir.parent)) from None
    return rendered, bool(used_secret)


def _managed_prepare(name: str, args: dict, ctx: Context) -> Content:
    if args["source"] is not None:
        body, secret = render_source(args["source"], ctx, args["context"])
    else:
        secret = isinstance(args["contents"], Secret)
        body = args["contents"].reveal() if secret else args["contents"]
        if args["contents_newline"] and not body.endswith("\n"):
            body += "\n"
    data = body.encode()
    return Content(data, hashlib.sha256(data).hexdigest(), secret)


def _managed_check(name: str, args: dict) -> None:
    if (args["source"] is None) == (args["contents"] is None):
        raise ArgError("give exactly one of `source` or `contents`")
    if args["context"] and args["source"] is None:
        raise ArgError("context: only used with `source`")
    if name.endswith("/"):
        raise ArgError("name: must be a file path")
    tree, check = args.get("check_tree"), args.get("check_cmd") or ""
    if ("{tree}" in check) != bool(tree):
        raise ArgError("check_tree: give it exactly when check_cmd uses {tree}")
    if tree and not name.startswith(tree.rstrip("/") + "/"):
        raise ArgError(f"check_tree: {name} is not inside {tree}")


def _relative_source(value: Any) -> str:
    value = string(value).removeprefix("salt://")
    if value.startswith("/") or ".." in value.split("/"):
        raise ArgError(f"{value!r}: give a path relative to the files/ directory")
    return value


@state("file.managed", name=abs_path, prepare=_managed_prepare, check=_managed_check,
       facts=lambda name, args, ctx: _stat_facts(name, checksum=True), args={
           "source": Arg(_relative_source),
           "contents": Arg(text),
           "contents_newline": Arg(boolean, default=True),
           "context": Arg(mapping, default={}),
           "mode": Arg(mode),
           "user": Arg(user_name),
           "group": Arg(user_name),
           "makedirs": Arg(boolean, default=False),
           "replace": Arg(boolean, default=True),
           "show_changes": Arg(boolean, default=True),
           "check_cmd": Arg(string),
           "check_tree": Arg(abs_path),
       })
def managed(call: Call):
    """A file with this content, owner and mode, written atomically (a temporary file,
    checked, then renamed over); unchanged content is never rewritten.

    name
        The file's absolute path.
    source
        A template under files/ (a ``salt://`` prefix is accepted), rendered with the host's variables.
    contents
        The content itself (instead of ``source``); may hold a secret, then no diff shows it.
    contents_newline
        End ``contents`` with a newline when it has none.
    context
        Extra template variables for ``source``.
    mode
        The file's mode, e.g. ``0644`` (as a string).
    user
        The file's owner.
    group
        The file's group.
    makedirs
        Create missing parent directories (else a missing parent fails the state).
    replace
        Rewrite the content when it differs; false only sets owner and mode of an existing file.
    show_changes
        Show the diff in the report (false for files whose content is private).
    check_cmd
        A shell command that must accept the new content before it goes live; nothing
        unchecked is ever live, and a refusal leaves the file as it was (the refused
        content is kept beside it, hidden, for a look). ``{tmp}`` is replaced by the quoted
        path of the new content; ``{tree}`` by a copy of ``check_tree`` with the new content in
        place (for checks that read a whole configuration, such as ``nginx -t -c
        {tree}/nginx.conf``); with neither, as in Salt, the new content's path is appended.
    check_tree
        The directory that ``{tree}`` in ``check_cmd`` copies (it must hold ``name``); inside
        the copy, every mention of this directory's path points at the copy.
    """
    a = call.args
    content: Content = call.prepared
    info: FileInfo | None = call.facts["path"]
    if info is not None and info.link:
        return (yield from refuse_link(call, info.link))
    if info is not None and info.is_link:
        return call.fail(f"{call.name} is a symbolic link; not replacing it")
    if info is not None and not info.is_file:
        return call.fail(f"{call.name} exists and is not a regular file")
    refused = parent_check(call, call.facts.get("parent"), a["makedirs"])
    if refused:
        return refused

    rewrite = info is None or (a["replace"] and info.sha256 != content.sha256)
    changes = metadata_changes(info, a)
    if rewrite:
        if not a["show_changes"]:
            changes["diff"] = "<not shown: show_changes is false>"
        elif content.secret:
            changes["diff"] = "<not shown: the content holds a secret>"
        elif info is None:
            changes["diff"] = "New file"
        else:
            old = yield Probe(FileContent(call.name))
            try:
                changes["diff"] = unified_diff(old or "", content.data.decode(), call.name)
            except UnicodeDecodeError:
                changes["diff"] = "binary content differs"
    if not changes:
        return call.done(f"{call.name} is in the correct state")
    what = "content" if rewrite else ", ".join(changes)
    if call.test:
        return call.would(f"would update {call.name} ({what})" if info else
                          f"would create {call.name}", changes)
    call.changes.update(changes)

    if not rewrite:
        failed = yield from change(call, nofollow("meta", call.name, *meta_args(a, changes)))
        return failed or call.done(f"updated {call.name} ({what})")
    return (yield from _replace(call, content, info))


def _replace(call: Call, content: Content, info: FileInfo | None):
    """file.managed's new content: written beside the target, checked, renamed over it."""
    a = call.args
    # Same mode/owner as the old file unless the state sets them: the rename
    # gives the target a new inode, which must not quietly lose its ownership.
    file_mode = a["mode"] if a["mode"] is not None else (info.mode if info else 0o644)
    user = a["user"] or (info.user if info else "")
    group = a["group"] or (info.group if info else "")
    tmp, rejected = temp_path(call.name, content.sha256), rejected_path(call.name)
    # the temporary file, with its owner and mode, made beside the target (and the
    # missing folders above it) by the walk that refuses a planted link
    put = ("put", tmp, octal(file_mode), user, group, "p" if call.facts.get("parent") is None else "")
    # content rejected by an earlier run is history once new content is in place
    live = ("mv", tmp, call.name, "rm", rejected)
    done = f"{'created' if info is None else 'updated'} {call.name}"
    check = a["check_cmd"]
    if not check:
        failed = yield from change(call, nofollow(*put, *live), stdin=content.data)
        return failed or call.done(done)
    # Never live first: the check reads the candidate (the temp file, or a copy of
    # check_tree with it in place), and only what passed is renamed over the target.
    # An interrupted run leaves the old file live, or the checked new one. Only that
    # rename goes live (a watching service's pending marker comes with it).
    failed = yield from change(call, nofollow(*put), stdin=content.data, stages_only=True)
    if failed:
        return failed
    checked = yield Run(check_command_for(check, tmp, call.name, a["check_tree"]), check=False,
                        stages_only=True)
    if not checked.ok:
        yield Run(nofollow("mv", tmp, rejected), stages_only=True)
        call.changes.clear()
        return call.fail(f"check_cmd `{check}` rejected the new content; "
                         f"{call.name} left unchanged, rejected content in {rejected}",
                         stderr=(checked.stderr or checked.stdout).strip())
    failed = yield from change(call, nofollow(*live))
    return failed or call.done(done + " (check_cmd passed)")


# --- file.directory / file.absent -------------------------------------------

@state("file.directory", name=abs_path,
       facts=lambda name, args, ctx: _stat_facts(name, checksum=False), args={
           "user": Arg(user_name),
           "group": Arg(user_name),
           "mode": Arg(mode),
           "makedirs": Arg(boolean, default=False),
       })
def directory(call: Call):
    """A directory with this owner and mode.

    name
        The directory's absolute path.
    user
        Its owner.
    group
        Its group.
    mode
        Its mode, e.g. ``0750``.
    makedirs
        Create missing parent directories (else a missing parent fails the state).
    """
    a = call.args
    info: FileInfo | None = call.facts["path"]
    if info is not None and info.link:
        return (yield from refuse_link(call, info.link))
    if info is not None and not info.is_dir:
        return call.fail(f"{call.name} exists and is not a directory")
    if info is None:
        refused = parent_check(call, call.facts.get("parent"), a["makedirs"])
        if refused:
            return refused
        changes = {"directory": {"old": "", "new": call.name}}
        if call.test:
            return call.would(f"would create directory {call.name}", changes)
        failed = yield from change(call, nofollow("dir", call.name, *meta_args(a),
                                                  "p" if a["makedirs"] else ""))
        return failed or call.done(f"created directory {call.name}", changes)
    changes = metadata_changes(info, a)
    if not changes:
        return call.done(f"directory {call.name} is in the correct state")
    if call.test:
        return call.would(f"would change {', '.join(changes)} of {call.name}", changes)
    failed = yield from change(call, nofollow("dir", call.name, *meta_args(a, changes), ""))
    return failed or call.done(f"changed {', '.join(changes)} of {call.name}", changes)


def _absent_name(value: Any) -> str:
    path = abs_path(value)
    if path == "/":
        raise ArgError("refusing to remove /")
    return path


@state("file.absent", name=_absent_name, facts=lambda name, args, ctx: {"path": Stat(name)})
def absent(call: Call):
    """No file or directory at this path (removed recursively when present).

    name
        The absolute path to remove (never ``/``).
    """
    info: FileInfo | None = call.facts["path"]
    if info is None:
        return call.done(f"{call.name} is absent")
    # a link at the path itself is removed (never what it points to); one above it, refused
    if info.link and info.link != call.name:
        return (yield from refuse_link(call, info.link))
    changes = {"removed": call.name}
    if call.test:
        return call.would(f"would remove {call.name}", changes)
    failed = yield from change(call, nofollow("rm", call.name))
    return failed or call.done(f"removed {call.name}", changes)


# --- file.recurse -------------------------------------------------------------

@dataclass(frozen=True)
class LocalTree:
    root: Path
    files: dict[str, str]        # relative path -> sha256
    manifest: str                # written to <dest>/.jupyterfab-manifest
    sha256: str                  # of the manifest: the one value compared on a no-op


_hash_cache: dict[tuple[str, int, int], str] = {}
# The hosts of a fleet hash the same tree at the same moment: unlocked, each of them
# missed the cache and read the whole wheelhouse itself (16 hosts: 16 x 60 MB).
_hash_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    """sha256 of a local file, remembered by (path, size, mtime) so a deploy to
    several hosts, or a second deploy in one process, reads each wheel once."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _hash_lock:
        if key not in _hash_cache:
            with path.open("rb") as f:
                _hash_cache[key] = hashlib.file_digest(f, hashlib.sha256).hexdigest()
        return _hash_cache[key]


def local_tree(root: Path, settings: str) -> LocalTree:
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in sorted(filenames):
            path = Path(dirpath, filename)
            rel = path.relative_to(root).as_posix()
            if rel == MANIFEST_NAME:
                continue
            if any(c in rel for c in "\n\\"):
                raise ValueError(f"cannot mirror a file name holding a newline or backslash: {rel!r}")
            files[rel] = file_sha256(path)
    # The settings line makes a change of owner or modes a manifest change too.
    manifest = f"# jupyterfab manifest v1 {settings}\n" + "".join(
        f"{sha}  {rel}\n" for rel, sha in sorted(files.items()))
    return LocalTree(root, files, manifest, hashlib.sha256(manifest.encode()).hexdigest())


def _recurse_prepare(name: str, args: dict, ctx: Context) -> LocalTree:
    source = Path(args["source"])
    root = source if source.is_absolute() else Path(ctx.files_dir) / source
    if not root.is_dir():
        raise FileNotFoundError(f"source directory {root} does not exist")
    settings = " ".join(f"{k}={args[k] if not isinstance(args[k], int) else octal(args[k])}"
                        for k in ("user", "group", "file_mode", "dir_mode"))
    return local_tree(root, settings)


def tar_stream(tree: LocalTree, names: list[str], file_mode: int, dir_mode: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs_done: set[PurePosixPath] = set()
        for rel in sorted(names):
            for sub in reversed(PurePosixPath(rel).parents[:-1]):    # the last parent is "."
                if sub not in dirs_done:
                    dirs_done.add(sub)
                    info = tarfile.TarInfo(str(sub))
                    info.type, info.mode = tarfile.DIRTYPE, dir_mode
                    tar.addfile(info)
            path = tree.root / rel
            info = tarfile.TarInfo(rel)
            info.size = path.stat().st_size
            info.mode = file_mode
            info.mtime = int(path.stat().st_mtime)
            with path.open("rb") as f:
                tar.addfile(info, f)
    return buffer.getvalue()


_streams_lock = threading.Lock()
_streams: dict[tuple, bytes] = {}
STREAMS_KEPT = 2        # the wheelhouse and the server extension's folder


def shared_tar_stream(tree: LocalTree, names: list[str], file_mode: int, dir_mode: int) -> bytes:
    """``tar_stream``, built once for all the hosts that need the same files: a fleet's
    first deploy sends each host the whole wheelhouse (60 MB), and sixteen hosts built
    a copy each at once (1.2 GB of the controller's memory). The newest
    ``STREAMS_KEPT`` are kept; the tree's manifest hash keys them, so none goes stale."""
    key = (str(tree.root), tree.sha256, tuple(sorted(names)), file_mode, dir_mode)
    with _streams_lock:
        if key not in _streams:
            while len(_streams) >= STREAMS_KEPT:
                del _streams[next(iter(_streams))]
            _streams[key] = tar_stream(tree, names, file_mode, dir_mode)
        return _streams[key]


def _listing(names: list[str], limit: int = 20) -> list[str]:
    return names if len(names) <= limit else names[:limit] + [f"... {len(names) - limit} more"]


@state("file.recurse", name=abs_path, prepare=_recurse_prepare,
       facts=lambda name, args, ctx: {
           "manifest": Stat(posixpath.join(name, MANIFEST_NAME), checksum=True),
           "path": Stat(name)}, args={
           "source": Arg(string, required=True),
           "clean": Arg(boolean, default=False),
           "user": Arg(user_name),
           "group": Arg(user_name),
           "file_mode": Arg(mode, default=0o644),
           "dir_mode": Arg(mode, default=0o755),
       })
def recurse(call: Call):
    """A directory tree copied from this machine, sending only files whose sha256 differs.

    name
        The target directory on the host.
    source
        The folder on this machine (absolute, or relative to files/).
    clean
        Remove files under the target that the source does not have.
    user
        The owner of what is copied.
    group
        The group of what is copied.
    file_mode
        The mode of the copied files.
    dir_mode
        The mode of the copied directories.
    """
    a = call.args
    tree: LocalTree = call.prepared
    manifest: FileInfo | None = call.facts["manifest"]
    target: FileInfo | None = call.facts["path"]
    for info in (target, manifest):
        if info is not None and info.link:
            return (yield from refuse_link(call, info.link))
    if target is not None and not target.is_dir:
        return call.fail(f"{call.name} exists and is not a directory")
    if manifest is not None and manifest.sha256 == tree.sha256:
        return call.done(f"{len(tree.files)} files in {call.name} match the manifest")

    remote = (yield Probe(TreeHashes(call.name))) if target is not None else {}
    send = [rel for rel, sha in tree.files.items() if remote.get(rel) != sha]
    added = [rel for rel in send if rel not in remote]
    changed = [rel for rel in send if rel in remote]
    removed = sorted(set(remote) - set(tree.files)) if a["clean"] else []
    changes = {k: _listing(v) for k, v in
               (("added", added), ("changed", changed), ("removed", removed)) if v}
    if not changes:
        changes["manifest"] = "rewritten (files already match)"
    if call.test:
        return call.would(f"would sync {len(send)} files to {call.name}"
                          + (f" and remove {len(removed)}" if removed else ""), changes)
    call.changes.update(changes)

    # Everything inside the target, in the target as the walk reached it: tar, rm,
    # find and chown get relative names and never follow a link inside the tree.
    if send or target is None:
        data = shared_tar_stream(tree, send, a["file_mode"], a["dir_mode"]) if send else None
        untar = cmd("tar", "-x", "--no-same-owner", "-f", "-")
        failed = yield from change(call, nofollow(*nofollow_run(call.name, "make", untar)) if data
                                   else nofollow("dir", call.name, "", "", "", "p"), stdin=data)
        if failed:
            return failed
    for start in range(0, len(removed), 200):
        rm = cmd("rm", "-f", "--", *removed[start:start + 200])
        failed = yield from change(call, nofollow(*nofollow_run(call.name, "need", rm)))
        if failed:
            return failed
    # The manifest goes last: an interrupted sync leaves the old one, so the
    # next run compares files again instead of trusting a half-done copy.
    # Modes and owner for every file, not only the ones sent: a changed
    # file_mode/user alone also changes the manifest and lands here.
    manifest_path = posixpath.join(call.name, MANIFEST_NAME)
    tmp = temp_path(manifest_path, tree.sha256)
    owner = owner_spec(a["user"], a["group"])
    steps = [cmd("find", ".", "-type", "d", "-exec", "chmod", octal(a["dir_mode"]), "--", "{}", "+"),
             cmd("find", ".", "-type", "f", "-exec", "chmod", octal(a["file_mode"]), "--", "{}", "+"),
             *([cmd("chown", "-R", "--", owner, ".")] if owner else [])]
    failed = yield from change(call, nofollow("put", tmp, "", "", "", "",
                                              *(p for step in steps for p in nofollow_run(call.name, "need", step)),
                                              "mv", tmp, manifest_path), stdin=tree.manifest.encode())
    return failed or call.done(f"synced {len(send)} files to {call.name}"
                               + (f", removed {len(removed)}" if removed else ""))
