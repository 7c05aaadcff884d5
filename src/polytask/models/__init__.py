"""polytask.models."""
