"""executor.client.client."""
