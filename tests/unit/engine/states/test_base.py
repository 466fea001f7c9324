"""The argument converters the states share (engine/states/base.py): every state
that takes the argument, the stack's included, refuses the same values in the same
words."""

from __future__ import annotations

import pytest

from jupyterfab.engine.states import REGISTRY
from jupyterfab.engine.states.base import ArgError
from jupyterfab.stack import states as stack_states  # noqa: F401  (registers env.*, conda.*)

# A state's name and required arguments, for trying one more argument on it.
MINIMAL = {"pip.installed": ("jupyterlab", {"bin_env": "/opt/env"}),
           "conda.env_present": ("/opt/env", {"conda": "/opt/conda/bin/conda", "file": "/srv/env.yml"}),
           "env.unpacked": ("/opt/env", {})}


def normalized(fun: str, **args) -> dict:
    name, required = MINIMAL[fun]
    return REGISTRY[fun].normalize(name, {**required, **args})[1]


@pytest.mark.parametrize("fun", ["pip.installed", "conda.env_present"])
def test_an_index_url_is_http_https_or_file(fun):
    assert normalized(fun, index_url="file:///srv/wheels")["index_url"] == "file:///srv/wheels"
    with pytest.raises(ArgError, match=r"^index_url: 'ftp://mirror' is not an http\(s\) or file URL$"):
        normalized(fun, index_url="ftp://mirror")


@pytest.mark.parametrize("fun", ["pip.installed", "env.unpacked"])
def test_a_bundle_is_a_file_on_this_machine(fun, tmp_path):
    (tmp_path / "env.tar.gz").write_bytes(b"")
    assert normalized(fun, bundle=str(tmp_path / "env.tar.gz"))["bundle"] == str(tmp_path / "env.tar.gz")
    with pytest.raises(ArgError, match=rf"^bundle: bundle {tmp_path}/gone.tar.gz is not a file on this machine$"):
        normalized(fun, bundle=str(tmp_path / "gone.tar.gz"))
