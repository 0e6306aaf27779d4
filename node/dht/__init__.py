"""The DHT service: Kademlia RPCs, lookups, upkeep, and the routing table on disk."""
