"""The ``shardify`` command line: a thin group that registers one module per command."""
