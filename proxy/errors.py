"""Errors of pseudowa's proxy side meant for the user; the CLI prints each as one line.

The tree (the store's own tree is in `pseudowa.storage.errors`, rooted at StoreError):

    UserError                 a mistake the user can fix
    ├── ConfigError           an option or a combination of options makes no sense
    ├── ListenError           a port is taken or an address cannot be bound
    ├── VerifyFailed          the bot failed Meta's verify handshake
    └── MutationError         a cassette mutation names something the cassette lacks
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix: bad option, bot not reachable, port taken."""


class ConfigError(UserError, ValueError):
    """An option, or a combination of options, that makes no sense."""


class ListenError(UserError, OSError):
    """A listener could not be started: port taken, address not local, no permission."""


class VerifyFailed(UserError):
    """The bot failed Meta's verify handshake; the message says how, in one line."""


class MutationError(UserError):
    """A mutation that cannot apply: unknown event or media id, a field the type lacks."""
