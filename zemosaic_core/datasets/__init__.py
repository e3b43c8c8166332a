"""Synthetic data sets: the demo tiles written by ``zemosaic demo-data``."""
