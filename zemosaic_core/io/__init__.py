"""Reading inputs (FITS, Bayer raw, compressed) and writing outputs (FITS, PNG, TIFF)."""
