"""Identity resolution: which lead a signal belongs to, and rehydration of cold storage."""
