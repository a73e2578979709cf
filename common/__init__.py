"""Pieces every stage shares, below them all: the error vocabulary, image keys, torch-free
image decoding and file discovery, Kafka topic admin and lag. Imports only settings."""
