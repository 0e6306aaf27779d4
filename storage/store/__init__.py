"""What a node keeps on disk (and in memory): the shard stores, holdings and the ledger database."""
