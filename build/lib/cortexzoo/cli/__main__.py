"""``python -m cortexzoo.cli ...`` is the ``cortexzoo`` command."""
import sys

from . import main

sys.exit(main())
