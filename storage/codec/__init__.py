"""The pure record codec: encoding, encryption, erasure code, hashes, manifest.

No files and no databases: a contract keeps os and sqlite3 out of it.
"""
