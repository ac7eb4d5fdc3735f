"""Private: the ``rerankpd`` command (:mod:`.commands`), its ``evaluate`` subcommand (:mod:`.evaluate`) and the
reading and writing of its files (:mod:`.io`). Not public API: use the command line.
"""

from __future__ import annotations

from .commands import main

__all__ = ["main"]
