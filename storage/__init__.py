"""What one node keeps and how record bytes are transformed.

Pure code plus synchronous disk I/O: no trio, no node, no clocks, no
randomness of its own (callers pass keys, nonces and ephemeral secrets in).
"""
