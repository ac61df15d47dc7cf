"""``python -m sketchgen.gpu_check``."""

import sys

from sketchgen.gpu_check.runner import main

sys.exit(main())
