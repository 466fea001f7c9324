# NGINX in front of Jupyter: the only way in from the network.

include:
  - packages

# Debian's welcome page would answer for every name; only our site does.
nginx_default_site:
  file.absent:
    - name: /etc/nginx/sites-enabled/default
    - require:
      - pkg: system_packages

# Written, then checked with nginx -t before NGINX reloads; a config nginx rejects
# is rolled back and the deploy stops here with nginx's own message.
nginx_site:
  file.managed:
    - name: /etc/nginx/sites-enabled/jupyter.conf
    - source: nginx/jupyter.conf.j2
    - mode: "0644"
    - check_cmd: nginx -t
    - require:
      - pkg: system_packages
      - file: nginx_default_site

nginx_service:
  service.running:
    - name: nginx
    - enable: true
    - reload: true
    - watch:
      - file: nginx_site
      - file: nginx_default_site
