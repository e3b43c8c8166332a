"""Display stretches for previews and 8-bit/16-bit exports (never applied to science data)."""
