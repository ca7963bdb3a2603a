"""Small runnable programs, one per feature area: ``python examples/<name>.py``."""
