"""Records that cross module boundaries, data files in and out, and the SQLite store."""
