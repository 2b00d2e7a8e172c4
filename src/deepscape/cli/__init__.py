"""The `deepscape` command: parse, call the library, print (rich for people, --json for tools).

Exit codes: 0 done, 1 the run failed, 2 bad input (unknown lab, key, value, run or data),
130 interrupted.

`common` holds the Typer app and what the commands share; each command module registers its
commands on that app when imported here. No command module imports this package's `__init__`.
"""

from deepscape.cli.common import app

# Imported in the order their commands appear in `deepscape --help`.
# isort: off
from deepscape.cli import labs, runs, experiments, inside, text  # noqa: F401
# isort: on

__all__ = ["app"]
