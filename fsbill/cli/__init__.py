"""The `fsbill` command: one module per group of sub-commands, each exposing register()."""
