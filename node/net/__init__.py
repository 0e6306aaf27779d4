"""Peer links: transports, the secure channel, connections, dispatch and RPC."""
