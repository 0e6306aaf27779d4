"""The imperative shell: trio tasks, sockets, clocks, randomness, the CLI and daemon."""
