"""executor.pool.pool."""
