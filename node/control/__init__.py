"""The local control socket: the daemon's server, its operations, and the CLI's client."""
