"""``python -m edgemobile`` — same as the ``edgemobile`` command."""

import sys

from edgemobile.cli.main import main

sys.exit(main())
