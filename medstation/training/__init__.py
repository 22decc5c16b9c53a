"""Training: datasets, trainers and metrics (no Qt)."""
