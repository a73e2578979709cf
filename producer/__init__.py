"""producer/: streams image keys (from PostgreSQL or stdin) into the Kafka topic."""
