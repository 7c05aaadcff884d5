"""polytask.train."""
