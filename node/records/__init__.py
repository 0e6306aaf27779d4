"""Records across the network: put, get, holders, transfers, repair and upkeep."""
