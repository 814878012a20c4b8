"""From raw request bytes to stored signals: parse, detect, fingerprint, store."""
