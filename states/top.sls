# Which state files apply to which hosts: a glob on the inventory name, or group:NAME.
base:
  '*':
    - jupyter
    - nginx
    - acme
