"""polytask.eval."""
