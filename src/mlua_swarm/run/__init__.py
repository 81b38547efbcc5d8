"""The run layer: drives a compiled Blueprint through the engine, with progress and persistence."""
