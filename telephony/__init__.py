"""The network edge: the WebSocket gateway and one small module per wire protocol."""
