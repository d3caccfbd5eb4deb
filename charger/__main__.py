"""``python -m charger`` is ``python -m charger.boot``."""

import sys

from charger.boot import main

sys.exit(main())
