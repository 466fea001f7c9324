"""Test doubles for the services jupyterfab talks to (e.g. a local Cloudflare API)."""
