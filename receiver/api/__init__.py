"""The HTTP layer: one blueprint per file, thin views over plain functions."""
