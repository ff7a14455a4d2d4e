"""Errors of the replay side meant for the user (the CLI prints them as one line)."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix: bad option, bot not reachable, port taken."""
