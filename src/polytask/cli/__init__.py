"""polytask.cli."""
