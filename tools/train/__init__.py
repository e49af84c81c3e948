"""Training: fine-tuning recipes and their reward functions."""
