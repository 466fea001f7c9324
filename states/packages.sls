# Every Debian package the stack needs, in one apt transaction (one apt-get is
# seconds faster than one per package group).
system_packages:
  pkg.installed:
    - pkgs:
      - python3
      - python3-venv
      - nginx
{% if acme_enabled %}
      - certbot          # tls: acme (acme.sls)
{% endif %}
