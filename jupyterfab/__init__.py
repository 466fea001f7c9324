"""jupyterfab: deploy Jupyter behind NGINX to your own Linux box over SSH."""

__version__ = "0.1.0"
