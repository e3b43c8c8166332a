"""``python -m zemosaic_gui``: start the desktop app."""

import sys

from .app import main

sys.exit(main())
