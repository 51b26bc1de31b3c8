"""One module per section of the web UI; each exposes ``router``."""
