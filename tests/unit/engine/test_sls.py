"""Rendering and checking state files: everything here happens before a host is touched."""

from __future__ import annotations

import jinja2
import pytest

from jupyterfab.engine.shell import Secret
from jupyterfab.engine.sls import SlsError
from jupyterfab.engine.templates import make_jinja_env

SALT_EXAMPLE = """\
nginx:
  pkg.installed: []
nginx_site:
  file.managed:
    - name: /etc/nginx/sites-available/jupyter.conf
    - source: nginx/jupyter.conf.j2
    - mode: "0644"
    - check_cmd: nginx -t
    - require:
      - pkg: nginx
nginx_service:
  service.running:
    - name: nginx
    - enable: true
    - reload: true
    - watch:
      - file: nginx_site
"""


def error_of(project) -> str:
    with pytest.raises(SlsError) as info:
        project.load()
    return str(info.value)


def test_salt_format_becomes_ordered_declarations(project):
    decls = project.sls(SALT_EXAMPLE).load()
    assert [(d.id, d.fun, d.name) for d in decls] == [
        ("nginx", "pkg.installed", "nginx"),
        ("nginx_site", "file.managed", "/etc/nginx/sites-available/jupyter.conf"),
        ("nginx_service", "service.running", "nginx"),
    ]
    site = decls[1]
    assert site.args["mode"] == 0o644 and site.args["check_cmd"] == "nginx -t"
    assert site.sls == "states/main.sls" and site.line == 4
    assert [(r.kind, r.targets) for r in site.requisites] == [("require", (("pkg", "nginx"),))]
    assert [(r.kind, r.targets) for r in decls[2].requisites] == [("watch", (("file", "nginx_site"),))]


def test_shorthand_forms(project):
    decls = project.sls("""\
curl: pkg.installed
git:
  pkg:
    - installed
    - version: "1:2.39.2-1"
""").load()
    assert [(d.id, d.fun, d.args["version"]) for d in decls] == [
        ("curl", "pkg.installed", None), ("git", "pkg.installed", "1:2.39.2-1")]


def test_one_id_with_two_modules_and_bare_requisite(project):
    decls = project.sls("""\
nginx:
  pkg.installed: []
  service.running:
    - require:
      - pkg: nginx
site:
  file.managed:
    - name: /etc/site
    - contents: x
    - require:
      - nginx
""").load()
    assert [d.label for d in decls] == ["pkg: nginx", "service: nginx", "file: site"]
    # a bare reference means every state with that ID
    assert decls[2].requisites[0].targets == (("pkg", "nginx"), ("service", "nginx"))


def test_requisites_come_first_otherwise_declaration_order(project):
    decls = project.sls("""\
a: {cmd.run: [{name: "true"}]}
svc:
  service.running:
    - require:
      - file: conf
b: {cmd.run: [{name: "true"}]}
conf:
  file.managed:
    - name: /etc/conf
    - contents: x
    - require:
      - user: jupyter
jupyter: user.present
""").load()
    assert [d.id for d in decls] == ["a", "jupyter", "conf", "svc", "b"]


def test_require_in_and_watch_in(project):
    decls = project.sls("""\
svc:
  service.running: []
conf:
  file.managed:
    - name: /etc/conf
    - contents: x
    - watch_in:
      - service: svc
""").load()
    assert [d.id for d in decls] == ["conf", "svc"]
    assert [(r.kind, r.targets) for r in decls[1].requisites] == [("watch", (("file", "conf"),))]


def test_requisite_by_name_and_by_sls(project):
    project.sls("""\
include:
  - base
site:
  file.managed:
    - name: /etc/site
    - contents: x
    - require:
      - pkg: nginx-full
      - sls: base
""")
    project.write("states/base.sls", "web_server:\n  pkg.installed:\n    - name: nginx-full\n")
    decls = project.load()
    assert [d.id for d in decls] == ["web_server", "site"]
    assert [r.targets for r in decls[1].requisites] == [(("pkg", "web_server"),)] * 2


def test_include_renders_included_files_first_and_once(project):
    project.sls("include:\n  - common\n  - web.extra\nmain_dir: {file.directory: [{name: /srv/main}]}\n")
    project.write("states/common.sls", "common_dir: {file.directory: [{name: /srv/common}]}\n")
    project.write("states/web/init.sls", "include: [common]\n")
    project.write("states/web/extra.sls",
                  "include: [.more]\nextra_dir: {file.directory: [{name: /srv/extra}]}\n")
    project.write("states/web/more.sls", "more_dir: {file.directory: [{name: /srv/more}]}\n")
    assert [d.id for d in project.load()] == ["common_dir", "more_dir", "extra_dir", "main_dir"]


def test_top_matches_host_glob_and_group(project):
    project.write("states/top.sls", """\
base:
  '*':
    - common
  'web*':
    - web
  'db*':
    - db
  'group:legacy':
    - upstart
""")
    for name in ("common", "web", "db", "upstart"):
        project.write(f"states/{name}.sls", f"{name}_dir: {{file.directory: [{{name: /srv/{name}}}]}}\n")
    project.host, project.groups = "web1", ("legacy",)
    assert [d.id for d in project.load()] == ["common_dir", "web_dir", "upstart_dir"]
    project.host, project.groups = "db2", ()
    assert [d.id for d in project.load()] == ["common_dir", "db_dir"]


def test_jinja_sees_host_vars_host_and_groups(project):
    project.vars = {"port": 8888, "users": ["ann", "bob"]}
    project.groups = ("jupyter",)
    decls = project.sls("""\
{% for u in users %}
home_{{ u }}:
  file.directory:
    - name: /home/{{ u }}/{{ host }}-{{ groups[0] }}-{{ port }}
{% endfor %}
""").load()
    assert [d.name for d in decls] == ["/home/ann/web1-jupyter-8888", "/home/bob/web1-jupyter-8888"]


def test_secret_var_stays_a_secret(project):
    project.vars = {"token": Secret("s3cr3t")}
    decls = project.sls("""\
register:
  cmd.run:
    - name: register --token {{ token }}
    - env:
      - TOKEN: "{{ token }}"
""").load()
    name, env = decls[0].name, decls[0].args["env"]
    assert isinstance(name, Secret) and name.reveal() == "register --token s3cr3t"
    assert env["TOKEN"] == Secret("s3cr3t")
    assert "s3cr3t" not in str(decls[0])


@pytest.mark.parametrize("written", ["0644", '"0644"', "644", "'644'", "0o644"])
def test_mode_forms(project, written):
    decls = project.sls(f"f:\n  file.directory:\n    - name: /srv/f\n    - mode: {written}\n").load()
    assert decls[0].args["mode"] == 0o644


# --- errors: each names the file, the line when known, and the state -------------

def test_jinja_syntax_error_names_file_and_line(project):
    message = error_of(project.sls("a: pkg.installed\nb: pkg.installed\nc: {{ x | }}\n"))
    assert message.startswith("states/main.sls, line 3: Jinja syntax error")


def test_undefined_variable_names_file_and_line(project):
    message = error_of(project.sls("a:\n  file.directory:\n    - name: /srv/{{ nope }}\n"))
    assert message.startswith("states/main.sls, line 3: undefined variable: 'nope' is undefined")


def test_undefined_variable_in_jinja_include_names_that_file(project):
    project.write("states/macros.jinja", "\n\n{{ missing_var }}\n")
    message = error_of(project.sls("{% include 'macros.jinja' %}\na: pkg.installed\n"))
    assert message.startswith("states/macros.jinja, line 3: undefined variable") and "missing_var" in message


def test_yaml_error_names_file_and_line(project):
    message = error_of(project.sls("a:\n  pkg.installed: []\nb:\n  - x\n   - y: [\n"))
    assert message.startswith("states/main.sls, line ") and "YAML error" in message


@pytest.mark.parametrize("value", ["!!int abc", "2026-13-01"])
def test_a_value_yaml_cannot_build_names_the_file_not_a_traceback(project, value):
    message = error_of(project.sls(f"a:\n  file.directory:\n    - name: {value}\n"))   # was a ValueError
    assert message.startswith("states/main.sls") and "YAML error: a value YAML cannot read" in message


def test_unknown_function(project):
    message = error_of(project.sls("a: pkg.latest\n"))
    assert message.startswith("states/main.sls, line 1: state 'a': unknown state function 'pkg.latest'")
    assert "pkg.installed" in message


def test_unknown_argument_names_its_line(project):
    message = error_of(project.sls(SALT_EXAMPLE.replace("    - check_cmd: nginx -t",
                                                        "    - check_cmd: nginx -t\n    - owner: www")))
    assert message.startswith("states/main.sls, line 9: state 'nginx_site':")
    assert "unknown argument 'owner'" in message


def test_a_mistyped_name_argument_is_named_not_the_id_taken_as_the_name(project):
    message = error_of(project.sls("site:\n  file.absent:\n    - nmae: /etc/nginx/site\n"))
    assert message.startswith("states/main.sls, line 3: state 'site': file.absent: unknown argument 'nmae'")


def test_bad_argument_value(project):
    message = error_of(project.sls("d:\n  file.directory:\n    - name: /srv/d\n    - mode: rwx\n"))
    assert "line 4" in message and "mode" in message and "octal" in message


def test_missing_required_argument(project):
    message = error_of(project.sls("w:\n  file.recurse:\n    - name: /opt/w\n"))
    assert "state 'w'" in message and "missing required argument 'source'" in message


def test_source_or_contents(project):
    message = error_of(project.sls("f:\n  file.managed:\n    - name: /etc/f\n"))
    assert "exactly one of `source` or `contents`" in message


def test_requisite_to_nothing(project):
    message = error_of(project.sls(SALT_EXAMPLE.replace("- pkg: nginx", "- pkg: nginx-full")))
    assert message.startswith("states/main.sls, line 9: state 'nginx_site': require: `pkg: nginx-full`")
    assert "matches no state" in message


def test_requisite_cycle(project):
    message = error_of(project.sls("""\
a:
  cmd.run:
    - require: [b]
b:
  cmd.run:
    - require: [c]
c:
  cmd.run:
    - watch: [a]
"""))
    assert "requisite cycle: cmd: a -> cmd: b -> cmd: c -> cmd: a" in message


def test_duplicate_id_across_files(project):
    project.sls("include: [other]\nx: pkg.installed\n")
    project.write("states/other.sls", "x:\n  pkg.installed:\n    - name: curl\n")
    message = error_of(project)
    assert "state 'x'" in message and "ID already used" in message


def test_an_id_used_again_in_another_file_for_another_module_is_refused(project):
    # (module, id) differ, but as in Salt an ID is global: `- require: [x]` could not say which
    project.sls("include: [other]\nx: pkg.installed\n")
    project.write("states/other.sls", "x:\n  file.absent:\n    - name: /etc/x\n")
    message = error_of(project)
    assert message.startswith("states/main.sls, line 2: state 'x': ID already used in states/other.sls")


@pytest.mark.parametrize("sls, line, first", [
    ("a:\n  pkg.installed: []\nb: pkg.installed\na:\n  file.absent:\n    - name: /etc/a\n", 4, 1),
    ("a:\n  file.absent:\n    - name: /etc/a\n  file.absent:\n    - name: /etc/b\n", 4, 2),
])
def test_a_key_written_twice_in_one_file_is_refused_not_dropped(project, sls, line, first):
    message = error_of(project.sls(sls))
    assert message.startswith(f"states/main.sls, line {line}: YAML error: ")
    assert f"twice in one mapping (first on line {first})" in message


@pytest.mark.parametrize("name", ["-oDebug::pkgProblemResolver=1", "nginx; reboot", "$(reboot)"])
def test_package_names_that_could_be_options_or_shell_are_refused(project, name):
    project.vars = {"evil": name}
    message = error_of(project.sls("p:\n  pkg.installed:\n    - name: '{{ evil }}'\n"))
    assert "not a valid Debian package name" in message


@pytest.mark.parametrize("sls", [
    "u:\n  user.present:\n    - name: '-o'\n",
    "s:\n  service.running:\n    - name: '--root=/'\n",
    "d:\n  file.directory:\n    - name: relative/path\n",
    "v:\n  pip.installed:\n    - name: '--index-url=http://evil'\n    - bin_env: /opt/v\n",
    "r:\n  file.absent:\n    - name: /\n",
])
def test_values_that_would_read_as_options_are_refused(project, sls):
    error_of(project.sls(sls))


def test_missing_sls_and_missing_top(project):
    project.write("states/top.sls", "base:\n  '*':\n    - nothere\n")
    assert "no sls named 'nothere'" in error_of(project)
    (project.states / "top.sls").unlink()
    assert "top.sls does not exist" in error_of(project)


def test_shared_jinja_env_is_strict_and_keeps_trailing_newline(tmp_path):
    (tmp_path / "t.j2").write_text("port {{ port }}\n")
    env = make_jinja_env(tmp_path)
    assert env.get_template("t.j2").render(port=1) == "port 1\n"
    with pytest.raises(jinja2.UndefinedError, match="'port' is undefined"):
        env.get_template("t.j2").render()
