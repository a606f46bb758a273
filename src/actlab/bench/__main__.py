"""``python -m actlab.bench ops|step``: see :mod:`actlab.bench.cli`."""

import sys

from actlab.bench.cli import main

sys.exit(main())
