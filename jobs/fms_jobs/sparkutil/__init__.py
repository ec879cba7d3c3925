"""Spark helpers: session construction and connector jars."""
