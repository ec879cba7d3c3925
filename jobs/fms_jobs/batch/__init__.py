"""Batch jobs: hourly summary (idempotent, compacting) and archive to the S3 lake."""
