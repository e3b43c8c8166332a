"""The coadd engine: backends (CPU reproject, GPU array engine), combines, coverage, and
the passes that run every channel on one backend."""
