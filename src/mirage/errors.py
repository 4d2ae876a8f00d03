"""What a user did wrong, as opposed to a bug: the CLI prints a `MirageError` as one red line and lets every other
exception show its traceback. Subclasses of ValueError, so library callers catching ValueError keep working."""

from __future__ import annotations


class MirageError(ValueError):
    """Bad input from the user: a flag, a file, a name, a run directory. The message names the thing at fault."""


class UsageError(MirageError):
    """A flag's value, or a combination of flags, that cannot work."""
