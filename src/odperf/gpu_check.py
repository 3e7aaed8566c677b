"""``python -m odperf.gpu_check``, the name the README and ``bash tasks.sh gpu-check`` give: the GPU check
itself is the command module ``odperf.commands.gpu_check``."""

import sys

from odperf.commands.gpu_check import main

if __name__ == "__main__":
    sys.exit(main())
