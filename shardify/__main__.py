"""``python -m shardify`` runs the command line."""

import sys

from shardify.cli.main import main

sys.exit(main())
