"""State functions, one module per Salt module, registered in ``REGISTRY``
under ``module.function`` (``pkg.installed``). See ``base`` for the contract."""

from . import acme, cmd, conda, env, file, group, pip, pkg, service, tls, user  # noqa: F401  (they register)
from .base import REGISTRY, Call, Context, Probe, Put, Run, StateFunction

__all__ = ["REGISTRY", "Call", "Context", "Probe", "Put", "Run", "StateFunction"]
