"""polytask.config."""
