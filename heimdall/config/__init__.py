"""config.json: its schema, loading with JSON-path errors, and seeding the store from it."""
