"""Display transfers for previews and 8-bit exports (never applied to science data), and
the optional colour calibration of a finished mosaic."""
