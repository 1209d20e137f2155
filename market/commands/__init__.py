"""Command groups of the ``flask`` CLI, one module per area (registered in market/cli.py)."""
