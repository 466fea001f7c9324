"""State functions, one module per Salt module, registered in ``REGISTRY``
under ``module.function`` (``pkg.installed``). See ``base`` for the contract.
A layer above adds its own (``jupyterfab.stack.states``) by importing them."""

from jupyterfab.engine.states import cmd, file, group, pip, pkg, service, tls, user  # noqa: F401  (they register)
from jupyterfab.engine.states.base import REGISTRY, Call, Context, Probe, Put, Run, StateFunction

__all__ = ["REGISTRY", "Call", "Context", "Probe", "Put", "Run", "StateFunction"]
