"""polytask.tasks."""
