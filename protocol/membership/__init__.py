"""Who may be a member: certificates an authority signs for node keys."""
