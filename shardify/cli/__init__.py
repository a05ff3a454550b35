"""The ``shardify`` command line: a thin group that registers one module per command."""

import os
import sys

from shardify.interrupts import install_early

# Run as the `shardify` program (not imported by other code): before the commands' imports,
# a Ctrl-C or SIGTERM while they load is the usual one line, too.
if sys.argv and (sys.argv[0] == "-m" or os.path.basename(sys.argv[0]) == "shardify"):
    install_early()
