"""polytask.balancing."""
