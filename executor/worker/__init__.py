"""executor.worker."""
