"""The log-mel front-end and its on-disk cache."""
