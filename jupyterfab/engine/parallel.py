"""How many hosts a fan-out (deploy, day-2 tasks, Cloudflare) works on at once.

A host's deploy is mostly waiting: on SSH round trips and on the host itself
(apt, unpacking, starting Jupyter). The controller's share is small (SSH crypto,
rendering templates, comparing facts) and Python runs it on one core at a time
anyway, so threads, not cores, bound the useful parallelism: several per core.
A ceiling keeps a big fleet from opening hundreds of SSH sessions, sockets and
buffers at once.
"""

from __future__ import annotations

import os

PER_CPU = 8         # hosts in flight per controller core
CEILING = 64        # and never more than this, whatever the core count


def fleet_workers(host_count: int, cpu_count: int | None = None, *,
                  per_cpu: int = PER_CPU, ceiling: int = CEILING) -> int:
    """Threads for ``host_count`` hosts on a controller with ``cpu_count`` cores
    (default: this machine's); at least 1, never more than there are hosts."""
    cores = cpu_count or os.cpu_count() or 1
    return max(1, min(host_count, cores * per_cpu, ceiling))
