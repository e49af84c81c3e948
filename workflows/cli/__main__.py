"""``python -m kaizen.workflows.cli``: the same as the ``kaizen`` script."""

import sys

from kaizen.workflows.cli.main import main

sys.exit(main())
