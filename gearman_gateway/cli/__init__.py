"""Command-line entry points: gearmand, gearadmin."""
