"""The command line, one module per concern: ``app`` (parser, logging, :func:`main` and its
exit codes), ``common`` (what every command shares), ``output`` (tables, JSON), the commands
by kind (``scanning``, ``library``, ``learning``, ``listing``) and their helpers (``progress``,
``completion``, ``demo``, ``systemd``)."""

from tagger.cli.app import main, main_entry

__all__ = ["main", "main_entry"]
