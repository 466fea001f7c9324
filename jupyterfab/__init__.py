"""jupyterfab: deploy Jupyter behind NGINX to your own Linux box over SSH.

Layers, each importing only those before it: ``engine`` (states over SSH, knows
nothing of Jupyter), ``inventory``, ``stack`` (the Jupyter product), ``verify``;
``dev`` (sandbox hosts, test doubles, docs generation) may use them all.
"""

from pathlib import Path

__version__ = "0.1.0"

# The checkout this package runs from: states/, files/, extensions/ beside it.
PROJECT = Path(__file__).resolve().parent.parent
