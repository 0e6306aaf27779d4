"""Test and research doubles, kept out of the product path.

The seeded simulated network, whole simulated nodes and clusters, the
in-memory transport, and real local daemons driven through the CLI.
"""
