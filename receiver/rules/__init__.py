"""Mapping rules: match an event, name it, score it, and extract fields from it."""
