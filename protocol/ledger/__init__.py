"""The signed ledger, sans-IO: entries, feeds, the state fold, gossip decisions."""
