"""``make demo``: local Azure, a seeded estate, and the rotation service run against it."""
