# Jupyter Server + JupyterLab in a venv, run by systemd as an unprivileged user.
# Variables come from hosts.yaml (see jupyterfab/inventory.py for the defaults);
# env_dir, config_file, jupyter_home, requirements and hashed_password are derived
# by the deploy.

include:
  - packages
{% if env_provider == 'conda' %}
  - jupyter.conda        # jupyter_env from a conda environment instead of a venv
{% endif %}

# Written before the account is made, so a run cut off between the two still knows
# on its next run that jupyterfab made it (an account that was there before is
# refused by the deploy's probe, before anything changes, and never gets a marker).
jupyter_user_marker:
  file.managed:
    - name: {{ notebook_user_marker }}
    - contents: "the notebook user: created by jupyterfab"
    - mode: "0644"
    - makedirs: true

# Its shell is nologin unless jupyter_user_login (see jupyterfab/login.py); Jupyter's
# terminals start bash themselves.
jupyter_user:
  user.present:
    - name: {{ jupyter_user }}
    - system: true
    - home: {{ jupyter_home }}
    - shell: {{ jupyter_user_shell }}
    - require:
      - file: jupyter_user_marker

# No SSH login for the notebook account either (DenyUsers), so an authorized_keys a
# kernel writes opens nothing, not even a tunnel. Checked by sshd on a copy of
# /etc/ssh with it in place; refused, saying what to do, where sshd would not read it.
{% if jupyter_user_login %}
notebook_user_sshd:
  file.absent:
    - name: {{ sshd_drop_in }}
{% else %}
notebook_user_sshd:
  file.managed:
    - name: {{ sshd_drop_in }}
    - source: ssh/deny_notebook_user.conf.j2
    - mode: "0644"
    - makedirs: true
    - check_tree: /etc/ssh
    - check_cmd: {{ sshd_drop_in_check }}
{% endif %}

# Reloaded, never started: an sshd started per connection (ssh.socket with
# Accept=yes) reads the file at every connection.
sshd_service:
  service.running:
    - name: ssh
    - reload: true
    - start: false
    - watch:
      - file: notebook_user_sshd

# Created once and never touched again: the deploy does not manage notebooks.
notebook_dir:
  file.directory:
    - name: {{ notebook_dir }}
    - user: {{ jupyter_user }}
    - group: {{ jupyter_user }}
    - mode: "0750"
    - makedirs: true
    - require:
      - user: jupyter_user

{% if wheelhouse_local %}
# Offline hosts: the wheels travel with the deploy (one hash comparison when
# current). The user's pip finds them here too (pip.conf below).
wheelhouse:
  file.recurse:
    - name: {{ wheelhouse_dir }}
    - source: {{ wheelhouse_local }}
    - clean: true
{% endif %}

{% if not env_bundle %}
# jupyterfab's own server extension (jupyterfab/serverext.py), a wheel built on the
# controller: the requirements point at it here. A bundle has it built in.
server_extensions:
  file.recurse:
    - name: {{ extensions_dir }}
    - source: {{ extensions_local }}
    - clean: true
{% endif %}

{% if env_provider == 'conda' %}
{# jupyter_env: states/jupyter/conda.sls #}
{% elif env_bundle %}
# Built once on the controller (same Python), unpacked here: no per-host compiling.
jupyter_env:
  env.unpacked:
    - name: {{ env_dir }}
    - bundle: {{ env_bundle }}
    - require:
      - pkg: system_packages
{% else %}
jupyter_env:
  pip.installed:
    - bin_env: {{ env_dir }}
    - pkgs: {{ requirements | tojson }}
    - installer: {{ pip_installer }}
{% if pip_index_url %}
    - index_url: {{ pip_index_url }}
{% endif %}
{% if wheelhouse_local %}
    - find_links: {{ wheelhouse_dir }}
    - no_index: true
{% endif %}
    - require:
      - pkg: system_packages
      - file: server_extensions
{% if wheelhouse_local %}
      - file: wheelhouse
{% endif %}
{% endif %}

{% if kernel_env %}
# The notebook user's own Python (see jupyterfab/kernelenv.py): the python3 kernel,
# where %pip, !pip and a terminal's pip install. Made once, as the user, under their
# home; later deploys only add what python_packages names and it lacks, never
# remove or upgrade what the user installed. No deploy or upgrade replaces it.
kernel_env:
  pip.installed:
    - bin_env: {{ kernel_env_dir }}
    - pkgs: {{ kernel_requirements | tojson }}
    - user: {{ jupyter_user }}
    - only_missing: true
    - broken_hint: "fab kernel-env --reset rebuilds it (the list of its packages is kept)"
    - installer: {{ pip_installer }}
{% if kernel_bundle %}
    # built once on the controller like the server's: a new one is unpacked, not compiled
    - bundle: {{ kernel_bundle }}
{% endif %}
{% if env_provider == 'conda' %}
    # a conda environment (conda create), so %conda install works in it too
    - conda: {{ conda_bin }}
    - conda_python: {{ conda_python | tojson }}
    - conda_channels: {{ conda_channels | tojson }}
{% endif %}
{% if pip_index_url %}
    - index_url: {{ pip_index_url }}
{% endif %}
{% if wheelhouse_local %}
    - find_links: {{ wheelhouse_dir }}
    - no_index: true
{% endif %}
    - require:
      - pkg: system_packages
      - file: notebook_dir
{% if wheelhouse_local %}
      - file: wheelhouse
{% endif %}
{% if env_provider == 'conda' %}
      - conda: conda
{% endif %}

# The server's kernel list finds this python3 first (JUPYTER_PATH, in the unit):
# it runs the user's environment, not the server's.
kernel_spec:
  file.managed:
    - name: {{ jupyter_data_path }}/kernels/python3/kernel.json
    - source: jupyter/kernel.json.j2
    - mode: "0644"
    - makedirs: true
{% endif %}

# The deploy's index for the user's own installs: pip's and uv's system-wide
# defaults for Jupyter's processes (XDG_CONFIG_DIRS, in the unit).
user_pip_conf:
  file.managed:
    - name: {{ xdg_config_dir }}/pip/pip.conf
    - source: jupyter/pip.conf.j2
    - mode: "0644"
    - makedirs: true

user_uv_toml:
  file.managed:
    - name: {{ xdg_config_dir }}/uv/uv.toml
    - source: jupyter/uv.toml.j2
    - mode: "0644"
    - makedirs: true

{% if condarc %}
# The deploy's channels for the user's own conda (CONDARC, in the unit).
user_condarc:
  file.managed:
    - name: {{ condarc }}
    - source: jupyter/condarc.j2
    - mode: "0644"
    - makedirs: true

{% endif %}
# JupyterLab's setting defaults (JUPYTER_CONFIG_PATH, in the unit): no news
# prompt, plus the inventory's jupyterlab_settings. Users' own settings still win.
lab_settings:
  file.managed:
    - name: {{ jupyter_config_path }}/labconfig/default_setting_overrides.json
    - source: jupyter/default_setting_overrides.json.j2
    - mode: "0644"
    - makedirs: true

config_dir:
  file.directory:
    - name: {{ config_dir }}
    - user: root
    - group: {{ jupyter_user }}
    - mode: "0750"
    - require:
      - user: jupyter_user

jupyter_config:
  file.managed:
    - name: {{ config_file }}
    - source: jupyter/jupyter_server_config.py.j2
    # Jupyter reads it (its group); notebook code, running as the same user, cannot
    # rewrite the password hash or the auth settings.
    - user: root
    - group: {{ jupyter_user }}
    - mode: "0640"
    - show_changes: false
    # Python must parse it (ast, so no __pycache__ is left in the config dir).
    - check_cmd: python3 -c "import ast, sys; ast.parse(open(sys.argv[1]).read())" {tmp}
    - require:
      - file: config_dir

# The init system the deploy found on the host runs Jupyter: a systemd unit, or
# an Upstart job on Upstart hosts (Ubuntu 14.04), as its adapter (initsys) says:
# where the definition goes, its template, and the check the candidate must pass.
{% set unit = service_unit("jupyter") %}
jupyter_unit:
  file.managed:
    - name: {{ unit.name }}
    - source: {{ unit.source }}
    - check_cmd: {{ unit.check_cmd }}
    - user: root
    - group: root
    - mode: "0644"

jupyter_service:
  service.running:
    - name: jupyter
    - enable: true
    - require:
      - jupyter_env
      - file: notebook_dir
    - watch:
      - file: jupyter_config
      - file: jupyter_unit
      - file: lab_settings
      - jupyter_env
