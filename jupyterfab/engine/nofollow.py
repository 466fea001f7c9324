"""Changes of a path, made as root without following a link that someone else could
have planted: the program the controller runs on the host (``shell.nofollow``).

Every component of the path is opened from ``/`` with ``O_NOFOLLOW`` and a directory
file descriptor, and the change is made through the last one (``fchown``, ``fchmod``,
``mkdirat``, ``renameat``, ``unlinkat``, a command run in that directory), in the same
process: a link swapped in after the check has nothing to redirect. A symbolic link is
followed only when ``trusted``: made by the user running this (root) in a directory
nobody else can write, so nobody else could have put it there (``/etc/ssl/...`` pairs,
an administrator's ``/home -> /data/home``). Any other link stops the run before it
changes anything, with one line naming it::

    /home/jupyter/notebooks is a symbolic link (to /usr/local/sbin); not changing it

It runs under any python3 a host has (``python3 -I -S -c SOURCE OP ARGS ...``): the
standard library only, and no syntax newer than Python 3.4. Operations, in order, the
first failure ends the run (exit 1; a refused link: exit 3)::

    dir PATH MODE USER GROUP PARENTS   a directory (made when missing; PARENTS "p": its
                                       missing parents too), then its owner and mode
    meta PATH MODE USER GROUP          an existing regular file's owner and mode
    put PATH MODE USER GROUP PARENTS   stdin into a new file PATH (an old one is
                                       removed first), then its owner and mode
    mv SRC DST                         rename within one directory (never into DST)
    rm PATH                            remove a file, a link or a whole tree (absent: fine)
    run DIR HOW N ARGV...              the N words of ARGV run in DIR; HOW is "need"
                                       (DIR must exist), "make" (made when missing) or
                                       "skip" (absent: nothing is run)

MODE, USER and GROUP may be "" (left as they are). ``-v VERB`` first changes the verb
of the refusal ("not reading it").
"""

import errno
import grp
import os
import pwd
import stat
import sys

REFUSED = 3
VERB = "changing"
MAX_LINKS = 40
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def trusted(link_uid, dir_uid, dir_mode, uid):
    """Whether a link may be followed by ``uid``: its own, in a directory of its own
    that neither group nor others can write."""
    return link_uid == uid and dir_uid == uid and not dir_mode & 0o022


def refusal(link, target, path, verb=VERB):
    """The one line a refused link gets (a name that is not printable, a target with a
    terminal escape, shown as Python would: it goes to someone's terminal)."""
    def shown(text):
        return text if text.isprintable() else repr(text)
    return (shown(link) + " is a symbolic link (to " + shown(target) + "); not " + verb + " "
            + ("it" if link == path else shown(path)))


def refuse(message):
    """The end of the run: nothing more is changed (a plain exit, not an exception
    class of its own: this file is also a module of jupyterfab, whose exceptions have
    one root)."""
    sys.stderr.write(message + "\n")
    raise SystemExit(REFUSED)


class Walk:
    """Components opened one by one, links followed only when ``trusted``."""

    def __init__(self, path, make=False):
        self.path, self.make, self.links = path, make, 0

    def open_dir(self, path):
        fd = os.open("/", DIR_FLAGS)
        where = "/"
        for name in [c for c in path.split("/") if c and c != "."]:
            fd, where = self.step(fd, where, name, DIR_FLAGS, self.make)
        return fd, where

    def step(self, fd, where, name, flags, make=False):
        """``name`` opened in ``fd`` with ``flags``, following it if it is a trusted
        link; returns (fd, its path). ``fd`` is closed."""
        here = os.path.normpath(os.path.join(where, name))
        try:
            try:
                new = os.open(name, flags, dir_fd=fd)
            except OSError as exc:
                if exc.errno == errno.ENOENT and make and flags & os.O_DIRECTORY:
                    try:
                        os.mkdir(name, 0o755, dir_fd=fd)
                    except OSError as again:
                        if again.errno != errno.EEXIST:
                            raise
                    new = os.open(name, flags, dir_fd=fd)
                elif exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK) and self.is_link(fd, name):
                    return self.follow(fd, where, name, here, flags, make)
                else:
                    raise
            return new, here
        except OSError as exc:
            if exc.filename == name:    # the component alone says little: its whole path
                raise OSError(exc.errno, exc.strerror, here) from None
            raise
        finally:
            os.close(fd)

    @staticmethod
    def is_link(fd, name):
        return stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)

    def follow(self, fd, where, name, here, flags, make):
        target = os.readlink(name, dir_fd=fd)
        link, holder = os.stat(name, dir_fd=fd, follow_symlinks=False), os.fstat(fd)
        if not trusted(link.st_uid, holder.st_uid, holder.st_mode, os.geteuid()):
            refuse(refusal(here, target, self.path, VERB))
        self.links += 1
        if self.links > MAX_LINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), here)
        base = "/" if target.startswith("/") else where
        start = os.open(base, DIR_FLAGS) if target.startswith("/") else os.dup(fd)
        parts = [c for c in target.split("/") if c and c != "."]
        if not parts:
            return start, base
        for part in parts[:-1]:
            start, base = self.step(start, base, part, DIR_FLAGS, make)
        return self.step(start, base, parts[-1], flags, make)


def in_parent(path, make=False):
    """(the open parent directory of ``path``, the walk, the last component)."""
    walk = Walk(path, make)
    parent, where = walk.open_dir(os.path.dirname(path))
    return parent, walk, where, os.path.basename(path)


def owner(user, group):
    try:
        uid = pwd.getpwnam(user).pw_uid if user else -1
    except KeyError:
        raise OSError(errno.EINVAL, "no such user", user) from None
    try:
        gid = grp.getgrnam(group).gr_gid if group else -1
    except KeyError:
        raise OSError(errno.EINVAL, "no such group", group) from None
    return uid, gid


def set_meta(fd, mode, ids):
    uid, gid = ids
    if uid != -1 or gid != -1:
        os.fchown(fd, uid, gid)
    if mode:
        os.fchmod(fd, int(mode, 8))


def op_dir(path, mode, user, group, parents):
    ids = owner(user, group)
    parent, walk, where, name = in_parent(path, make=parents == "p")
    try:
        os.mkdir(name, 0o700 if mode else 0o777, dir_fd=parent)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            os.close(parent)
            raise
    fd, _ = walk.step(parent, where, name, DIR_FLAGS)
    try:
        set_meta(fd, mode, ids)
    finally:
        os.close(fd)


def op_meta(path, mode, user, group):
    ids = owner(user, group)
    parent, walk, where, name = in_parent(path)
    fd, _ = walk.step(parent, where, name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                      | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        set_meta(fd, mode, ids)
    finally:
        os.close(fd)


def op_put(path, mode, user, group, parents):
    ids = owner(user, group)
    parent, walk, where, name = in_parent(path, make=parents == "p")
    try:
        try:
            os.unlink(name, dir_fd=parent)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=parent)
    finally:
        os.close(parent)
    try:
        with os.fdopen(os.dup(fd), "wb") as out:
            while True:
                chunk = sys.stdin.buffer.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
        set_meta(fd, mode, ids)
    finally:
        os.close(fd)


def op_mv(src, dst):
    if os.path.dirname(src) != os.path.dirname(dst):
        raise OSError(errno.EXDEV, "mv: only within one directory", dst)
    parent, _, _, name = in_parent(src)
    try:
        os.rename(name, os.path.basename(dst), src_dir_fd=parent, dst_dir_fd=parent)
    finally:
        os.close(parent)


def op_rm(path):
    try:
        parent, _, _, name = in_parent(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return
        raise
    try:
        try:
            found = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return
            raise
        if not stat.S_ISDIR(found.st_mode):
            os.unlink(name, dir_fd=parent)
            return
        # a tree: rm -rf never follows a link inside it, and starts from this directory
        os.fchdir(parent)
        run_argv(["rm", "-rf", "--", name])
    finally:
        os.close(parent)


def op_run(path, how, argv):
    try:
        fd, _ = Walk(path, make=how == "make").open_dir(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT and how == "skip":
            return
        raise
    try:
        os.fchdir(fd)
    finally:
        os.close(fd)
    run_argv(argv)


def run_argv(argv):
    """``argv`` run to its end (os, not subprocess: its import is most of a run's time)."""
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            sys.stderr.write(argv[0] + ": " + str(exc.strerror) + "\n")
        os._exit(127)
    _, status = os.waitpid(pid, 0)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
    if code:
        raise SystemExit(code)


ARITY = {"dir": (op_dir, 5), "meta": (op_meta, 4), "put": (op_put, 5), "mv": (op_mv, 2),
         "rm": (op_rm, 1)}


def main(argv):
    global VERB
    if argv[:1] == ["-v"]:
        VERB, argv = argv[1], argv[2:]
    try:
        while argv:
            name = argv[0]
            if name == "run":
                count = int(argv[3])
                op_run(argv[1], argv[2], argv[4:4 + count])
                argv = argv[4 + count:]
                continue
            if name not in ARITY or len(argv) <= ARITY[name][1]:
                sys.stderr.write("nofollow: cannot read " + repr(argv) + "\n")
                return 2
            function, arity = ARITY[name]
            function(*argv[1:1 + arity])
            argv = argv[1 + arity:]
    except OSError as exc:
        said = str(exc.strerror or exc)
        sys.stderr.write((str(exc.filename) + ": " + said if exc.filename else said) + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
