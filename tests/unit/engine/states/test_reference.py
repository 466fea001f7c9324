"""Every state documents each of its arguments (Salt style), and the reference page
is generated from those docstrings."""

from jupyterfab.dev import docs_reference
from jupyterfab.engine.states import REGISTRY, reference
from jupyterfab.engine.states.base import Arg, StateFunction, string


def undocumented(registry: dict[str, StateFunction] = REGISTRY) -> list[str]:
    """Every state argument without a description in its state's docstring."""
    missing = []
    for ref, spec in sorted(registry.items()):
        _, described = reference.parse(spec.apply.__doc__ or "")
        missing += [f"{ref}: {arg}" for arg in ["name", *spec.args] if not described.get(arg)]
    return missing


def test_every_state_argument_is_documented():
    assert undocumented() == []


def test_an_undocumented_argument_is_found():
    def fake(call):
        """Does things.

        name
            What to do it to.
        """
    spec = StateFunction("fake.state", fake, {"speed": Arg(string)})
    assert undocumented({"fake.state": spec}) == ["fake.state: speed"]


def test_the_page_lists_each_state_and_argument_with_its_default_and_the_tmp_rule():
    page = docs_reference.states_page()
    assert all(f"## `{ref}`" in page for ref in REGISTRY)
    assert "| `check_cmd` | text |  | A shell command that must accept the new content" in page
    assert "``{tmp}`` is replaced by the quoted path of the new content" in page
    assert "| `reload` | true/false | `false` |" in page and "| `bin_env` | absolute path | required |" in page
    assert "| `unless` |" in page and reference.GLOBAL_DOC["unless"] in page
