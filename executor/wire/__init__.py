"""executor.wire."""
