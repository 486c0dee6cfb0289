"""The command-line prologue every stage shares, so the eight stages cannot drift apart.

A stage is ``python -m stages.<name> --params params.yaml <paths...>``: the same ``--params`` flag,
the same log format, params read through the stage's declared view (:mod:`signflow.stage_params`),
and the same failure contract: bad params or inputs print one line ``<name>: error: <why>`` on
stderr and exit 2 (argparse's own code for a bad command line), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from signflow.config import Params
from signflow.stage_params import load_stage_params

# Bad params or a missing input: the run cannot start. Same code as argparse's usage errors.
EXIT_BAD_INPUT = 2
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class StageCli:
    """One stage's command line: its name, the params keys it declares (``PARAMS``) and its docstring."""

    name: str
    params_keys: tuple[str, ...]
    doc: str

    def parser(self) -> argparse.ArgumentParser:
        """An argument parser with the stage's one-line description and ``--params``; add the paths."""
        parser = argparse.ArgumentParser(prog=f"python -m stages.{self.name}", description=self.doc.splitlines()[0])
        parser.add_argument(
            "--params", default="params.yaml", help=f"params file (the stage reads {', '.join(self.params_keys)})"
        )
        return parser

    def parse(
        self, parser: argparse.ArgumentParser, argv: Sequence[str] | None, *, log_level: int = logging.INFO
    ) -> argparse.Namespace:
        """Parse ``argv`` and set up logging (after parsing, so ``--help`` prints nothing else)."""
        args = parser.parse_args(argv)
        logging.basicConfig(level=log_level, format=LOG_FORMAT)
        return args

    def params(self, args: argparse.Namespace) -> Params:
        """The stage's read-only view of ``--params``: reading an undeclared key fails at once."""
        return load_stage_params(args.params, self.name, self.params_keys)

    def fail(self, error: BaseException | str, code: int = EXIT_BAD_INPUT) -> int:
        """Print ``<name>: error: <why>`` as one line on stderr; return the exit code for ``main``."""
        print(f"{self.name}: error: {one_line(str(error))}", file=sys.stderr)
        return code


def one_line(message: str) -> str:
    """A multi-line message (a params error lists one key per line) joined into one line."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return "; ".join(lines).replace(":; ", ": ")
