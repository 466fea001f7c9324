"""Property tests: no inventory value can change the structure of what lands on a host.

For every string variable (and a free-form x_ variable in a state file of the
user's own), Hypothesis builds values from the characters that carry meaning
somewhere: ``; } { \\n " ' $ ( ) # {{ ` `` and friends, alone or after a valid
value. Each value is either refused when the inventory loads, naming the
variable, or the deploy's state declarations, the NGINX site (parsed by
crossplane, NGINX's own parser as a library), the systemd unit, the Upstart job
and the Jupyter config (parsed by Python's ast) have the same structure as with
a plain value, and the value is one token in them.
"""

from __future__ import annotations

import ast
import re
import tempfile
from pathlib import Path

import crossplane
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jupyterfab import inventory
from jupyterfab.engine import checks, highstate, sls
from jupyterfab.engine.states.file import render_source
from jupyterfab.inventory import InventoryError, schema
from jupyterfab.stack import deploy
from jupyterfab.stack.front import tlsplan

PROBED = {"os_id": "debian", "os_version": "12", "machine": "x86_64", "glibc": (2, 36),
          "python": "3.11", "hashed_password": "argon2:$argon2id$placeholder", "pid1": "systemd",
          "ipv4": "", "ipv6": "", "upgraded_to": None, "jupyterlab_installed": None,
          "installed_certificate": (None, None), "notebook_user": None}
FRAGMENTS = [";", "}", "{", "\n", '"', "'", "$", "(", ")", "#", "{{", "}}", "`", " ", ":", ": ",
             "- ", "\\", "%", "*", "&", "|", "<", ">", "[", "]", ",", "!", "=", "/", "..", "~",
             "\t", "\r", "\x1b", "\u2028", "a", "Z", "0", "9", "-", "_", ".", "@",
             "\n    - unless: touch /tmp/pwned; false", "; location /e { return 200 pwned; } #",
             "\n[Service]\nExecStartPre=+/usr/bin/id\n#", "$(reboot)", "{{ 7*7 }}", "x.example.com"]
STRING_VARS = [name for name, var in schema.VARIABLES.items() if isinstance(var.default, str)]
# Paths of files on this machine: read here, never written into a host's file as text.
CONTROLLER_PATHS = ("wheelhouse", "tls_certificate", "tls_key", "origin_pull_ca", "conda_installer")
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def values_for(name: str):
    """Hostile text, alone or after the variable's example (so some of it is accepted)."""
    example = schema.VARIABLES[name].example
    starts = st.sampled_from(["", example if isinstance(example, str) else ""])
    return st.builds(lambda start, parts: start + "".join(parts), starts,
                     st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=6))


def derive(host: inventory.Host, init: str) -> dict:
    """The deploy's template variables for a probed host (the plan, and fixed stand-ins
    for what the deploy's side effects would add)."""
    plan = deploy.plan_host(host, {**PROBED, "init": init})
    return {**plan.vars, "hashed_password": PROBED["hashed_password"], "wheelhouse_local": "",
            "env_bundle": "", "kernel_bundle": "", "extensions_local": "/nonexistent/extensions"}


def plain_value(name: str) -> str:
    return schema.VARIABLES[name].example


def load_host(name: str, value) -> inventory.Host:
    """The value through the real inventory load, --set style checks and the edge plan."""
    # plain HTTP (no ACME for a public-looking name), except where Cloudflare's proxy
    # gives the origin its certificate
    variables = {"allow_plain_http": True}
    if not name.startswith("cloudflare_"):
        variables["tls"] = "off"
    variables[name] = value
    if name in ("tls_certificate", "tls_key"):
        variables = {"tls_certificate": value, "tls_key": value}
    if name == "cloudflare_api_url":       # in a file: Cloudflare's own endpoint only
        variables["cloudflare_zone"] = "example.com"
    text = yaml.safe_dump({"hosts": {"h": {"address": "203.0.113.10", "vars": variables}}})
    host = inventory.parse(text, "hosts.yaml").select(["h"])[0]
    tlsplan.plan_for(host.name, host.vars)
    return host


def rendered(host: inventory.Host) -> dict:
    """Everything the deploy would write for this host, as structure and as text."""
    variables = derive(host, "systemd")
    ctx = highstate.Context(host=host.name, vars=variables, files_dir=deploy.PROJECT / "files",
                         init="systemd")
    decls = sls.load_states(deploy.PROJECT / "states", ctx)
    out = {"states": [(d.id, d.fun, tuple(sorted(d.args)), type(d.name).__name__,
                       tuple((r.kind, r.targets) for r in d.requisites)) for d in decls],
           "state_values": [v for d in decls for v in (d.name, *d.args.values())]}
    tree = _nginx_tree(render_source("nginx/jupyter.conf.j2", ctx)[0])
    out["nginx"] = _nginx_shape(tree)
    out["nginx_args"] = _nginx_args(tree)
    unit, _ = render_source("jupyter/jupyter.service.j2", ctx)
    out["unit"] = _settings(unit, "=")
    out["unit_lines"] = unit.splitlines()
    upstart_ctx = highstate.Context(host=host.name, vars=variables, files_dir=ctx.files_dir,
                                 init="upstart")
    out["upstart"] = _settings(render_source("jupyter/jupyter.upstart.j2", upstart_ctx)[0], None)
    config, _ = render_source("jupyter/jupyter_server_config.py.j2", ctx)
    tree = ast.parse(config)
    out["config"] = ast.dump(_without_constants(tree))
    out["config_strings"] = [n.value for n in ast.walk(ast.parse(config)) if isinstance(n, ast.Constant)]
    return out


def _nginx_shape(block):
    return [(d["directive"], len(d["args"]), _nginx_shape(d.get("block", []))) for d in block]


def _nginx_args(block):
    return [a for d in block for a in (*d["args"], *_nginx_args(d.get("block", [])))]


def _without_constants(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            node.value = None
    return tree


BASELINE: dict[str, dict] = {}


def baseline(name: str) -> dict:
    if name not in BASELINE:
        BASELINE[name] = rendered(load_host(name, plain_value(name)))
    return BASELINE[name]


@pytest.mark.parametrize("name", STRING_VARS)
def test_a_string_variable_is_refused_or_stays_one_value(name):
    @SETTINGS
    @given(values_for(name))
    def check(value):
        try:
            host = load_host(name, value)
            if name in CONTROLLER_PATHS:
                assert not checks.has_control(value)
                return
            out = rendered(host)
        except (inventory.InventoryError, tlsplan.EdgeConfigError, deploy.DeployError) as exc:
            assert name in str(exc) or (name.startswith("tls_") and "tls_" in str(exc)), str(exc)
            assert "\n" not in str(exc)
            return
        plain = baseline(name)
        for part in ("states", "nginx", "unit", "upstart", "config"):
            assert out[part] == plain[part], f"{name}={value!r} changed the {part}"
        # the value itself, where it is written, is one token (one argument, one string)
        if value in plain_value(name) or value == plain_value(name):
            return
        if name in ("server_name", "client_max_body_size"):
            assert value in out["nginx_args"]          # one whole argument
        for line in out["unit_lines"]:
            assert "\n" not in line
        if name in ("notebook_dir", "public_url"):
            assert value in out["config_strings"] or value.rstrip("/") in out["config_strings"] \
                or name == "public_url"

    check()


def test_accepted_values_do_get_through():
    """The property is not vacuous: hostile-looking but valid values load and render."""
    for name, value in [("server_name", "a-b.example.com"), ("notebook_dir", "/home/jupyter/n-1_b"),
                        ("prefix", "/opt/j+f"), ("client_max_body_size", "1g"),
                        ("tls_certificate", "/certs/my cert (1).pem"),
                        ("jupyterlab_version", ">=4.4,!=4.4.1,<5")]:
        out = rendered(load_host(name, value))
        assert out["states"] == baseline(name)["states"]


# --- a state file of the user's own, with an x_ variable in every position ---------

OWN_SLS = """\
plain:
  file.managed:
    - name: /tmp/plain
    - contents: {{ x_note }}
quoted:
  file.managed:
    - name: /tmp/quoted
    - contents: "{{ x_note }}"
single:
  file.managed:
    - name: /tmp/single
    - contents: '{{ x_note }}'
joined:
  file.managed:
    - name: /tmp/joined
    - contents: "note={{ x_note }}!"
flow:
  cmd.run:
    - name: echo
    - env: [{NOTE: {{ x_note }}}]
"""


def own_states(tmp: Path, value) -> list:
    (tmp / "states").mkdir(exist_ok=True)
    (tmp / "states" / "top.sls").write_text("base:\n  '*':\n    - own\n")
    (tmp / "states" / "own.sls").write_text(OWN_SLS)
    ctx = highstate.Context(host="h", vars={"x_note": value}, files_dir=tmp / "files")
    return sls.load_states(tmp / "states", ctx)


@SETTINGS
@given(st.lists(st.sampled_from(FRAGMENTS + ["true", "~", "0644", "1.5", "null", "yes"]),
                min_size=1, max_size=6).map("".join))
def test_an_own_variable_is_data_in_every_position_of_an_sls(value):
    try:
        inventory.validate_vars({"x_note": value}, ("hosts", "h", "vars"))
    except inventory.InventoryError as exc:
        assert "x_note" in str(exc) and checks.has_control(value)
        return
    with tempfile.TemporaryDirectory() as tmp:
        decls = own_states(Path(tmp), value)
        plain = own_states(Path(tmp), "plain")
    assert [(d.id, d.fun, sorted(d.args)) for d in decls] == [(d.id, d.fun, sorted(d.args)) for d in plain]
    contents = {d.id: d.args.get("contents") for d in decls}
    assert contents["plain"] == contents["quoted"] == contents["single"] == value
    assert contents["joined"] == f"note={value}!"
    assert dict(decls[-1].args["env"]) == {"NOTE": value}


def test_numbers_stay_numbers_and_words_stay_words(tmp_path):
    (tmp_path / "states").mkdir()
    (tmp_path / "states" / "top.sls").write_text("base:\n  '*':\n    - own\n")
    (tmp_path / "states" / "own.sls").write_text(
        "unit:\n  file.managed:\n    - name: /tmp/u\n    - mode: {{ x_mode }}\n"
        "    - contents: \"port {{ x_port }}\"\n    - makedirs: {{ x_flag }}\n")
    ctx = highstate.Context(host="h", vars={"x_mode": "0600", "x_port": 8888, "x_flag": True},
                         files_dir=tmp_path / "files")
    [decl] = sls.load_states(tmp_path / "states", ctx)
    assert decl.args["mode"] == 0o600 and decl.args["makedirs"] is True
    assert decl.args["contents"] == "port 8888"


# --- the second line: the templates' own escaping, with the schema out of the way -----

TEMPLATE_VARS = ["server_name", "jupyter_user", "notebook_dir", "prefix", "client_max_body_size",
                 "public_url", "jupyterlab_version", "pip_index_url", "apt_proxy"]


@pytest.mark.parametrize("name", TEMPLATE_VARS)
def test_without_the_schema_the_templates_still_refuse_or_keep_the_structure(name):
    """Values the schema would refuse, put straight into a host's variables (as a gap in
    the schema, or a derived value, would): every file keeps its structure, or the render
    (a template's escaping, a state's typed argument) refuses the value before anything
    is sent."""
    @SETTINGS
    @given(values_for(name))
    def check(value):
        host = inventory.Host("h", "203.0.113.10", vars={**inventory.VAR_DEFAULTS, "allow_plain_http": True, "tls": "off", name: value})
        try:
            out = rendered(host)
        except sls.SlsError as exc:
            # refused here by a template's escaping or a state's typed argument; never
            # because the value broke the YAML
            assert "YAML error" not in str(exc) and "\n" not in str(exc), str(exc)
            return
        plain = baseline(name)
        for part in ("states", "nginx", "unit", "upstart", "config"):
            assert out[part] == plain[part], f"{name}={value!r} changed the {part}"

    check()


def _render_alone(template: str, init: str, name: str, value) -> str:
    host = inventory.Host("h", "203.0.113.10", vars={**inventory.VAR_DEFAULTS, "allow_plain_http": True, "tls": "off", name: value})
    variables = derive(host, init)
    ctx = highstate.Context(host="h", vars=variables, files_dir=deploy.PROJECT / "files", init=init)
    return render_source(template, ctx)[0]


def _nginx_tree(site: str):
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
        f.write(site)
        f.flush()
        parsed = crossplane.parse(f.name, single=True, check_ctx=False, check_args=False)
    assert parsed["status"] == "ok", parsed["errors"]
    return parsed["config"][0]["parsed"]


def _settings(text: str, separator: str | None) -> list[str]:
    return [line.split(separator, 1)[0] for line in text.splitlines()
            if line.strip() and not line.startswith("#")]


# (template, init, its format's name in the refusal, how to read its structure)
FORMATS = {
    "nginx": ("nginx/jupyter.conf.j2", "systemd", "an NGINX config",
              lambda text: _nginx_shape(_nginx_tree(text))),
    "systemd": ("jupyter/jupyter.service.j2", "systemd", "a systemd unit",
                lambda text: _settings(text, "=")),
    "upstart": ("jupyter/jupyter.upstart.j2", "upstart", "an Upstart job",
                lambda text: _settings(text, None)),
}


@pytest.mark.parametrize("fmt, name", [(f, n) for f in FORMATS
                                       for n in ("server_name", "jupyter_user", "notebook_dir",
                                                 "client_max_body_size")
                                       if f == "nginx" or n != "client_max_body_size"])
def test_each_template_alone_writes_a_value_in_its_syntax_or_refuses_it(fmt, name):
    """One format's escaping on its own (in a deploy, whichever file refuses first stops
    it): the file has the structure it has with a plain value, or the render refuses."""
    template, init, refusal, shape = FORMATS[fmt]
    plain = shape(_render_alone(template, init, name, plain_value(name)))

    @SETTINGS
    @given(values_for(name))
    def check(value):
        try:
            text = _render_alone(template, init, name, value)
        except sls.SlsError as exc:
            assert f"cannot be written into {refusal}" in str(exc), str(exc)
            return
        assert shape(text) == plain, value
        if fmt == "nginx" and name in ("server_name", "client_max_body_size"):
            # one argument, whole (crossplane keeps a quoted string's escapes; NGINX reads
            # \\ and \" as \ and ")
            args = [re.sub(r"\\(.)", r"\1", a) for a in _nginx_args(_nginx_tree(text))]
            assert value in args

    check()


def test_the_issues_unless_injection_cannot_add_a_condition():
    """`notebook_dir` breaking out of its scalar to add an `unless:` that ran as root even
    under --dry-run: past the schema, the value is one argument (refused as a path)."""
    value = "/home/jupyter/nb\n    - unless: touch /tmp/pwned; false"
    with pytest.raises(InventoryError, match="notebook_dir"):
        load_host("notebook_dir", value)
    host = inventory.Host("h", "203.0.113.10", vars={**inventory.VAR_DEFAULTS, "allow_plain_http": True,
                                                                "notebook_dir": value})
    variables = derive(host, "systemd")
    ctx = highstate.Context(host="h", vars=variables, files_dir=deploy.PROJECT / "files")
    decls = sls.render_sls(deploy.PROJECT / "states", sls.top_sls_names(deploy.PROJECT / "states", ctx), ctx)
    [notebook_dir] = [d for d in decls if d.id == "notebook_dir"]
    assert notebook_dir.name == value and "unless" not in notebook_dir.args
    with pytest.raises(sls.SlsError, match="notebook_dir.*expected an absolute path"):
        sls.validate(decls)


def test_the_project_states_have_no_conditions_a_dry_run_would_execute():
    """A dry run runs only read-only probes: the project's own states carry no
    unless/onlyif (which a dry run executes to predict), whatever the inventory says."""
    host = load_host("server_name", "jupyter.example.com")
    variables = derive(host, "systemd")
    ctx = highstate.Context(host="h", vars=variables, files_dir=deploy.PROJECT / "files")
    decls = sls.load_states(deploy.PROJECT / "states", ctx)
    assert decls and not [d.id for d in decls if d.args.get("unless") or d.args.get("onlyif")]


def test_a_quoted_value_is_text_as_it_would_be_written(tmp_path):
    """`"{{ x_flag }}"` in quotes is the text True, as YAML would read the written value."""
    (tmp_path / "states").mkdir()
    (tmp_path / "states" / "top.sls").write_text("base:\n  '*':\n    - own\n")
    (tmp_path / "states" / "own.sls").write_text(
        "unit:\n  file.managed:\n    - name: /tmp/u\n    - contents: \"{{ x_flag }}\"\n")
    ctx = highstate.Context(host="h", vars={"x_flag": True}, files_dir=tmp_path / "files")
    [decl] = sls.load_states(tmp_path / "states", ctx)
    assert decl.args["contents"] == "True"
