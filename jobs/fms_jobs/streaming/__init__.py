"""Streaming job: Kafka -> four-dimension validation -> Parquet lake + dead letters (see .job)."""
