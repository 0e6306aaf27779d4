"""Kademlia, sans-IO: contacts, the routing table, lookups, DHT records and their messages."""
