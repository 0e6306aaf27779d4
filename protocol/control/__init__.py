"""The local control protocol between the `medvault` CLI and its daemon: commands, replies."""
