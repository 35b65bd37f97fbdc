"""Readers that turn the data forms people have into one table of clips."""
