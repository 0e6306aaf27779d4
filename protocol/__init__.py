"""What peers say to each other and how they agree: sans-IO state machines.

Pure code: no trio, no node, no clocks (`now` is a parameter), no randomness
of its own. Filled in by the transport, DHT and ledger work.
"""
