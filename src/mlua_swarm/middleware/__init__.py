"""middleware layer."""
