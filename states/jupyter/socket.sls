# Where NGINX reaches Jupyter (jupyterfab/stack/serving.py): a Unix socket in a folder that
# only root creates and only NGINX and the Jupyter service can open. Included by both
# jupyter and nginx: each needs it before it starts.

include:
  - packages

jupyter_socket_group:
  group.present:
    - name: {{ jupyter_socket_group }}
    - system: true

# setgid: the socket Jupyter makes in it belongs to the group, so NGINX may connect
# (0660) while no other account of the host can even look into the folder.
jupyter_socket_dir:
  file.directory:
    - name: {{ jupyter_socket_dir }}
    - user: root
    - group: {{ jupyter_socket_group }}
    - mode: "2770"
    - makedirs: true
    - require:
      - group: jupyter_socket_group

# NGINX's workers take their groups from /etc/group at every (re)load.
nginx_socket_member:
  user.present:
    - name: {{ nginx_user }}
    - groups:
      - {{ jupyter_socket_group }}
    - remove_groups: false
    - require:
      - pkg: system_packages
      - group: jupyter_socket_group

# "Serving" means: the socket answers as the service's own main process. The unit's
# start check, fab status and fab upgrade's watcher ask this script.
serving_check:
  file.managed:
    - name: {{ serving_check }}
    - source: jupyter/serving.py.j2
    - mode: "0755"
    - user: root
    - group: root
    - makedirs: true
    - check_cmd: python3 -c "import ast, sys; ast.parse(open(sys.argv[1]).read())" {tmp}
