"""tls.pair: a certificate and its key that always switch together.

    /etc/ssl/jupyterfab/NAME            -> NAME.<sha>   (one symlink: what NGINX reads)
    /etc/ssl/jupyterfab/NAME.<sha>/cert.pem             (0644)
    /etc/ssl/jupyterfab/NAME.<sha>/key.pem              (0600)

A new pair is written into a hidden directory, checked (the key is the
certificate's, when the host has openssl), renamed to ``NAME.<sha>`` and then
made live by renaming a fresh symlink over ``NAME``: one rename(2), so at every
instant NGINX finds the complete old pair or the complete new one, never a new
certificate with the old key. The pair it replaced is kept (an NGINX not yet
reloaded may still be told to read it); older ones are removed.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass

from jupyterfab.engine.facts.files import FileInfo, Stat
from jupyterfab.engine.shell import cmd
from jupyterfab.engine.states.base import Arg, Call, Context, Put, Run, abs_path, state, string
from jupyterfab.engine.states.file import refuse_link, render_source

CERTIFICATE = "cert.pem"
KEY = "key.pem"

# $1 the staged directory, made empty for the new pair.
STAGE_PAIR = 'rm -rf -- "$1" && mkdir -p -m 0700 -- "$1"'

# $1 the staged directory. Its modes, and the key checked against the certificate:
# nothing live changes here (a mismatched pair stops before the switch).
CHECK_PAIR = r"""
set -e
staged="$1"
[ "$(id -u)" != 0 ] || chown -R root:root "$staged"
chmod 0755 "$staged"
chmod 0644 "$staged/CERT"; chmod 0600 "$staged/KEY"
if command -v openssl >/dev/null 2>&1; then
    a=$(openssl x509 -noout -pubkey -in "$staged/CERT" | openssl sha256)
    b=$(openssl pkey -pubout -in "$staged/KEY" | openssl sha256)
    [ "$a" = "$b" ] || { echo "the key in $staged is not the certificate's: not switching" >&2; exit 1; }
fi
""".replace("CERT", CERTIFICATE).replace("KEY", KEY)

# $1 the live link, $2 the checked staged directory, $3 the version's name beside
# the link. The directory renamed into place, the link switched, older versions
# pruned (the one just replaced is kept).
SWITCH_PAIR = r"""
set -e
link="$1"; staged="$2"; version="$3"; base="${link##*/}"; dir="${link%/*}"
old="$(readlink "$link" 2>/dev/null || true)"
rm -rf "$dir/$version"; mv -T "$staged" "$dir/$version"
ln -sfn "$version" "$dir/.$base.swap"; mv -T "$dir/.$base.swap" "$link"
for d in "$dir/$base".*; do
    [ -d "$d" ] && [ ! -L "$d" ] || continue
    v="${d##*/}"; v="${v#"$base".}"
    case "$v" in *[!0-9a-f]*) continue ;; esac
    [ "${#v}" -eq 16 ] || continue          # only this pair's versions
    case "${d##*/}" in "$version"|"$old") ;; *) rm -rf "$d" ;; esac
done
"""


@dataclass(frozen=True)
class Pair:
    certificate: bytes
    key: bytes

    @property
    def version(self) -> str:
        return hashlib.sha256(self.certificate + b"\0" + self.key).hexdigest()[:16]


def _prepare(name: str, args: dict, ctx: Context) -> Pair:
    certificate, _ = render_source(args["certificate_source"], ctx)
    key, _ = render_source(args["key_source"], ctx)
    return Pair(certificate.encode(), key.encode())


def _facts(name: str, args: dict, ctx: Context) -> dict:
    return {"link": Stat(name), "certificate": Stat(posixpath.join(name, CERTIFICATE), checksum=True),
            "key": Stat(posixpath.join(name, KEY), checksum=True)}


@state("tls.pair", name=abs_path, prepare=_prepare, facts=_facts, args={
    "certificate_source": Arg(string, required=True),
    "key_source": Arg(string, required=True),
})
def pair(call: Call):
    """A certificate and its key under one symlink, switched together: a new pair is
    written into a versioned directory beside it, its key checked against the
    certificate, and only then the symlink replaced by one rename.

    name
        The symlink NGINX reads through (``name/cert.pem``, ``name/key.pem``).
    certificate_source
        A template under files/ rendering the certificate chain (PEM).
    key_source
        A template under files/ rendering its private key (PEM; never shown in a diff).
    """
    wanted: Pair = call.prepared
    link: FileInfo | None = call.facts["link"]
    certificate: FileInfo | None = call.facts["certificate"]
    key: FileInfo | None = call.facts["key"]
    # a pair reached through a link someone else could have planted is never written
    for info in (link, certificate, key):
        if info is not None and info.link:
            return (yield from refuse_link(call, info.link))
    if link is not None and not link.is_link:
        return call.fail(f"{call.name} exists and is not a symbolic link; not replacing it")
    current = (link is not None and certificate is not None and key is not None
               and certificate.sha256 == hashlib.sha256(wanted.certificate).hexdigest()
               and key.sha256 == hashlib.sha256(wanted.key).hexdigest()
               and certificate.mode == 0o644 and key.mode == 0o600)
    if current:
        return call.done(f"{call.name} holds this certificate and key")
    version = f"{posixpath.basename(call.name)}.{wanted.version}"
    changes = {"pair": {"old": "" if link is None else "another pair", "new": version}}
    if call.test:
        return call.would(f"would switch {call.name} to {version} (certificate and key together)",
                          changes)
    parent = posixpath.dirname(call.name)
    staged = posixpath.join(parent, f".{version}.partial")
    yield Run(cmd("sh", "-c", STAGE_PAIR, "sh", staged), stages_only=True)
    yield Put(wanted.certificate, posixpath.join(staged, CERTIFICATE))
    yield Put(wanted.key, posixpath.join(staged, KEY))
    # one round trip: checked, then (with a watching service's pending marker) switched
    yield Run(cmd("sh", "-c", SWITCH_PAIR, "sh", call.name, staged, version),
              staged_by=cmd("sh", "-c", CHECK_PAIR, "sh", staged))
    return call.done(f"switched {call.name} to {version} (certificate and key together)", changes)
