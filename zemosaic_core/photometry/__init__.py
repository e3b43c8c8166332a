"""Bringing tiles onto one photometric scale: overlap matching and two-pass gains."""
