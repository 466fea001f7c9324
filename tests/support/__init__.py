"""Helpers only the tests use: fault injection, socket options, a conda installer and channel."""
