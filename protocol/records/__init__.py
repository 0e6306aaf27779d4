"""Records among peers, sans-IO: shard messages."""
