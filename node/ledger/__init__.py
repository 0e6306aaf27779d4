"""The ledger service and its gossip replication."""
