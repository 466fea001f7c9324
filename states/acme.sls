# An ACME certificate for server_name (tls: acme; see jupyterfab/stack/front/acme.py): Debian's
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
    - makedirs: true
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

{% if acme_challenge_type == "dns-01" %}
# DNS-01: certbot's hooks set the _acme-challenge TXT record through Cloudflare's API,
# from this host, with this host's own token (renewals need no controller).
acme_dns_hook:
  file.managed:
    - name: {{ acme_dns_hook }}
    - source: acme/cloudflare-hook.py.j2
    - mode: "0755"
    - makedirs: true
{% if acme_dns_token %}

acme_dns_token:
  file.managed:
    - name: {{ acme_dns_token_path }}
    - source: acme/cloudflare-token.j2
    - mode: "0600"
    - user: root
    - group: root
    - show_changes: false
    - makedirs: true
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
{% else %}
    - manual_auth_hook: {{ acme_dns_hook }} auth
    - manual_cleanup_hook: {{ acme_dns_hook }} cleanup
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
{% if acme_challenge_type == "dns-01" %}
      - file: acme_dns_hook
{% if acme_dns_token %}
      - file: acme_dns_token
{% endif %}
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
