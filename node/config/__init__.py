"""A node's settings and files: config.toml, its sections, the data directory, key files."""
