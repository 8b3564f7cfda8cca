"""What tests share: servers they start, helpers for other processes. Never a test itself."""
