"""The Jupyter stack's own states (``env.*``, ``conda.*``, ``acme.*``), registered in the
engine's ``REGISTRY`` when this package is imported (the deploy does)."""

from jupyterfab.stack.states import acme, conda, env  # noqa: F401  (they register)
