"""`python -m supernode` = the `supernode` command."""

from supernode.cli import _entry

_entry()
