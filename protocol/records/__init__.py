"""Records among peers, sans-IO: shard messages, placement, health, repair, fetch, upload."""
