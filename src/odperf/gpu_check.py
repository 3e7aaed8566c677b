"""``python -m odperf.gpu_check [spread] ...``, the name the README and ``bash tasks.sh gpu-check`` give: the
GPU check itself is ``odperf.commands.gpu_check``, the spread study (``spread``) ``odperf.commands.spread``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["spread"]:
        from odperf.commands.spread import main as spread_main

        return spread_main(given[1:])
    from odperf.commands.gpu_check import main as check_main

    return check_main(given)


if __name__ == "__main__":
    sys.exit(main())
