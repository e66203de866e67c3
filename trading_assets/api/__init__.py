"""The read-only REST API over the stored graph (``trading-assets api``, docs/api.md).

``app.py`` builds the FastAPI application (auth, CORS), ``routes.py`` holds the endpoints and their
fixed SQL, ``store.py`` reads the DuckDB file (through snapshots) or the bucket, ``errors.py`` maps
errors to 4xx/503 answers.
"""
