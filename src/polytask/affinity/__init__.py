"""polytask.affinity."""
