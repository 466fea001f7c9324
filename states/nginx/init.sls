# NGINX in front of Jupyter: the only way in from the network.

include:
  - packages
  - jupyter.socket       # where NGINX reaches Jupyter

# Debian's welcome page would answer for every name; only our site does.
nginx_default_site:
  file.absent:
    - name: /etc/nginx/sites-enabled/default
    - require:
      - pkg: system_packages

{% set tls_files = tls_enabled and not acme_enabled %}
{% if tls_files %}
# TLS for the origin: a Cloudflare Origin CA certificate (issued or renewed by the
# deploy, its key made on the controller) or your own (tls_certificate, tls_key).
# An ACME certificate is certbot's, on the host (acme.sls).
tls_dir:
  file.directory:
    - name: {{ tls_dir }}
    - user: root
    - group: root
    - mode: "0755"

# Certificate and key switch together: a versioned directory behind one symlink.
tls_pair:
  tls.pair:
    - name: {{ tls_pair_path }}
    - certificate_source: nginx/tls_certificate.pem.j2
    - key_source: nginx/tls_key.pem.j2
    - require:
      - file: tls_dir
{% if origin_pulls_enabled %}

origin_pull_ca:
  file.managed:
    - name: {{ origin_pull_ca_path }}
    - source: nginx/origin_pull_ca.pem.j2
    - mode: "0644"
    - require:
      - file: tls_dir
{% endif %}
{% endif %}

# Checked with nginx -t on a copy of /etc/nginx with the new site in place, and
# only then renamed into place: a config nginx rejects never goes live (it is kept
# as .jupyter.conf.rejected) and the deploy stops here with nginx's own message.
nginx_site:
  file.managed:
    - name: /etc/nginx/sites-enabled/jupyter.conf
    - source: nginx/jupyter.conf.j2
    - mode: "0644"
    - check_tree: /etc/nginx
    - check_cmd: nginx -t -q -c {tree}/nginx.conf
    - require:
      - pkg: system_packages
      - file: nginx_default_site
      - user: nginx_socket_member
{% if tls_files %}
      - tls: tls_pair
{% if origin_pulls_enabled %}
      - file: origin_pull_ca
{% endif %}
{% endif %}

# Old workers let go of WebSockets this long after a reload (a main-context
# directive: NGINX reads it from modules-enabled/, not from a site).
nginx_worker_shutdown:
  file.managed:
    - name: /etc/nginx/modules-enabled/90-jupyterfab-worker-shutdown.conf
    - source: nginx/worker_shutdown.conf.j2
    - mode: "0644"
    - makedirs: true
    - check_tree: /etc/nginx
    - check_cmd: nginx -t -q -c {tree}/nginx.conf
    - require:
      - pkg: system_packages

# A reload returns only once the new configuration serves: a request right after a
# plain reload (`nginx -s reload`, which only signals) still gets the old workers, on
# a first deploy Debian's default site. On systemd the drop-in below makes it
# `systemctl reload nginx`'s ExecReload (this deploy's, certbot's, an admin's); on
# Upstart the init adapter reloads NGINX through it (initsys/upstart.py).
nginx_reload_script:
  file.managed:
    - name: /usr/local/sbin/jupyterfab-nginx-reload
    - source: nginx/reload.py.j2
    - mode: "0755"
    - user: root
    - group: root
    - makedirs: true
    - check_cmd: python3 -c "import ast, sys; ast.parse(open(sys.argv[1]).read())" {tmp}
{% if init != "upstart" %}

nginx_reload_dropin:
  file.managed:
    - name: /etc/systemd/system/nginx.service.d/jupyterfab-reload.conf
    - source: nginx/reload.conf.j2
    - mode: "0644"
    - user: root
    - group: root
    - makedirs: true
    - require:
      - file: nginx_reload_script
{% endif %}

nginx_service:
  service.running:
    - name: nginx
    - enable: true
    - reload: true
    - require:
{% if init != "upstart" %}
      - file: nginx_reload_dropin
{% else %}
      - file: nginx_reload_script
{% endif %}
    - watch:
      - file: nginx_site
      - file: nginx_worker_shutdown
      - file: nginx_default_site
      # new workers: they take the socket's group from /etc/group
      - user: nginx_socket_member
{% if tls_files %}
      # a renewed certificate is served after a reload
      - tls: tls_pair
{% if origin_pulls_enabled %}
      - file: origin_pull_ca
{% endif %}
{% endif %}
{% if tls_files %}

# Before tls.pair, the certificate and key were NAME.crt and NAME.key beside it.
# They go once NGINX runs a site that reads the pair (the site live and reloaded),
# never before: until then a reload or a reboot still reads them.
{% for suffix in ("crt", "key") %}
tls_before_pair_{{ suffix }}:
  file.absent:
    - name: {{ tls_pair_path }}.{{ suffix }}
    - require:
      - service: nginx_service
{% endfor %}
{% endif %}
