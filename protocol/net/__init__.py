"""What crosses a connection: handshake, box-stream, frames, messages, request ids."""
