"""Break-glass emergency access: the owner's policy, sealed reasons, the RPC, the review."""
