"""polytask.merging."""
