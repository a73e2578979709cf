"""db/: the PostgreSQL stage — schema migrations and every SQL statement the pipeline runs."""
