"""One lock for every call into the core that touches astropy WCS objects.

astropy's WCS (wcslib) releases the GIL inside its transformations but is not
thread-safe: two threads using WCS objects at once — a build in the worker thread and
a header check of a newly added file, say — can crash the interpreter. The GUI runs
such calls one at a time: the build holds the lock for its whole run, header checks
and saves take it per call (they run in pool threads and simply wait), and the GUI
thread only ever *tries* it (the cursor read-out leaves RA/Dec out while a build runs)
so the window never waits for a build.
"""

from __future__ import annotations

import threading

#: Held around build_mosaic, probe_input, the writers and WCS look-ups.
CORE_LOCK = threading.RLock()
