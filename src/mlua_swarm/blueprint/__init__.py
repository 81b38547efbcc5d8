"""blueprint layer."""
