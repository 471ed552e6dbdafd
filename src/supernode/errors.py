"""Error types. Every error carries a one-line message naming the file, field or parameter."""


class SupernodeError(Exception):
    """Base class; ``str(err)`` is a one-line, user-facing message."""

    exit_code = 1


class CatalogError(SupernodeError):
    """A catalog file is malformed (unknown key, missing unit, bad value, unknown source...)."""

    exit_code = 2


class UsageError(SupernodeError):
    """Bad input on the command line or API: unknown id, impossible configuration."""

    exit_code = 2
