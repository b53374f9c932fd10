"""GT Studio exports recognised by content and parsed into typed records (no IO)."""
