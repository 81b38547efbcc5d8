"""The `mse` command line."""
