# env_provider: conda. Miniforge/Miniconda into conda_prefix (its sha256 checked
# before it runs), the environment Jupyter Server runs from (jupyter_env, which
# init.sls starts the service from), one environment per kernel template, and a
# kernel for every conda environment. See jupyterfab/stack/states/conda.py.

{% if conda_installer_is_url %}
conda_download_tools:
  pkg.installed:
    - pkgs:
      - curl
      - ca-certificates
{% endif %}

conda:
  conda.installed:
    - name: {{ conda_prefix }}
    - source: {{ conda_installer | tojson }}
    - sha256: {{ conda_installer_sha256 }}
    - require:
      - pkg: system_packages
{% if conda_installer_is_url %}
      - pkg: conda_download_tools
{% endif %}

{# wheelhouse (offline hosts): states/jupyter/init.sls #}

{% for e in conda_envs %}
{{ e.id ~ '_file' }}:
  file.managed:
    - name: {{ e.file }}
    - source: {{ e.source }}
    - context: {env_name: {{ e.name | tojson }}}
    - mode: "0644"
    - makedirs: true

{{ e.id }}:
  conda.env_present:
    - name: {{ e.dir }}
    - conda: {{ conda_bin }}
    - file: {{ e.file }}
{% if pip_index_url %}
    - index_url: {{ pip_index_url }}
{% endif %}
{% if wheelhouse_local %}
    - find_links: {{ wheelhouse_dir }}
    - no_index: true
{% endif %}
    - require:
      - conda: conda
      - file: server_extensions
{% if wheelhouse_local %}
      - file: wheelhouse
{% endif %}
    - watch:
      - file: {{ e.id ~ '_file' }}
{% endfor %}

conda_kernels:
  conda.kernels:
    - name: {{ env_dir }}
    - conda: {{ conda_bin }}
    - require:
{% for e in conda_envs %}
      - conda: {{ e.id }}
{% endfor %}
