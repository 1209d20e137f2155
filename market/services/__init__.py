"""Use cases: one function each, which checks access, validates, writes and commits once."""
