"""``python -m zemosaic_core.solving fetch DIR``: fetch the index files; ``find [DIR]``."""

import sys

from .index_files import main

sys.exit(main())
