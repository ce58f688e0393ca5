"""``python -m mailopsd`` is the same as the ``mailopsd`` command."""

import sys

from mailopsd.cli.main import main

sys.exit(main())
