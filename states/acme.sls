# An ACME certificate for server_name (tls: acme; see jupyterfab/acme.py): Debian's
# certbot on the host gets it once NGINX serves port 80 with the challenge location
# (no TLS server yet), keeps it in /etc/letsencrypt/live/NAME/ and renews it with its
# own certbot.timer; the deploy hook reloads NGINX after each renewal. NGINX's TLS
# server goes live only once the certificate is there (the deploy's second pass).
{% if acme_enabled %}
include:
  - packages
  - nginx

acme_webroot:
  file.directory:
    - name: {{ acme_webroot }}
    - user: root
    - group: root
    - mode: "0755"
    - makedirs: true

# After each renewal (certbot.timer, or certbot renew by hand): NGINX serves the new
# certificate; a renewal that fails leaves the old one in place and serving.
acme_deploy_hook:
  file.managed:
    - name: {{ acme_deploy_hook }}
    - source: acme/reload-nginx.sh.j2
    - mode: "0755"
    - require:
      - pkg: system_packages
{% if acme_ca_bundle_pem %}

# acme_ca_bundle: the CA that acme_server's HTTPS certificate chains to (a test CA,
# e.g. Pebble's), trusted by this host's certbot only, for issuing and renewing.
acme_ca_bundle:
  file.managed:
    - name: {{ acme_ca_bundle_path }}
    - source: acme/ca_bundle.pem.j2
    - mode: "0644"
    - makedirs: true
{% if init == "systemd" %}

acme_certbot_environment:
  file.managed:
    - name: /etc/systemd/system/certbot.service.d/jupyterfab.conf
    - source: acme/certbot-environment.conf.j2
    - mode: "0644"
    - makedirs: true

acme_certbot_daemon_reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: acme_certbot_environment
{% endif %}
{% endif %}

acme_certificate:
  acme.cert:
    - name: {{ server_name }}
    - email: {{ acme_email }}
    - server: {{ acme_server_url }}
    - preferred_challenges: {{ acme_challenge_type }}
{% if acme_challenge_type == "http-01" %}
    - webroot: {{ acme_webroot }}
{% endif %}
{% if acme_ca_bundle_pem %}
    - env:
        REQUESTS_CA_BUNDLE: {{ acme_ca_bundle_path }}
{% endif %}
    - require:
      - service: nginx_service
      - file: acme_webroot
      - file: acme_deploy_hook
{% if acme_ca_bundle_pem %}
      - file: acme_ca_bundle
{% endif %}
{% if init == "systemd" %}

# Debian's certbot renews from this timer (twice a day, at 30 days left).
acme_renewal_timer:
  service.running:
    - name: certbot.timer
    - enable: true
    - require:
      - pkg: system_packages
{% endif %}
{% endif %}
