"""The `medvault` command: its verbs and the two demos."""
