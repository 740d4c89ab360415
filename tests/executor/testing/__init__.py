"""tests.executor.testing."""
