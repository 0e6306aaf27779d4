"""Break-glass emergency access: the owner's side (policy, queue, grants, sign-off) and
the requester's side (asking each record's owner node)."""
