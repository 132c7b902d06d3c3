"""Ready-made training objectives for greentune studies."""
