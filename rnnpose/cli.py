"""The ``rnnpose`` command: ``synth | train | import-ae | eval | predict | book``.

Each subcommand lives in the module that holds its logic, which exposes
``add_arguments(parser)`` and ``run(args) -> int``; this file only dispatches and turns the
package's input errors into one clear line on stderr (exit status 2). Numbers and paths are
checked by argparse itself (the types of :mod:`rnnpose.cli_types`), before any command runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from rnnpose.checkpoint import CheckpointError
from rnnpose.cli_types import OneLineParser
from rnnpose.io import DataError

#: subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("rnnpose.data.synthetic", "generate the synthetic crowded-people benchmark"),
    "train": ("rnnpose.train", "train the AE network or the RMPP decoder"),
    "import-ae": ("rnnpose.train.ae_import",
                  "an AE run folder from a pose-ae-train checkpoint (the released network)"),
    "eval": ("rnnpose.evaluate", "COCO keypoint AP of a results file or a trained run"),
    "predict": ("rnnpose.predict", "run a trained model on images and draw the people"),
    "book": ("rnnpose.book", "execute the notebooks and build the Jupyter Book"),
}


def build_parser() -> argparse.ArgumentParser:
    from rnnpose import __version__

    parser = OneLineParser(prog="rnnpose", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"rnnpose {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a bad argument (one line already printed), --help, --version
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    command = " ".join(filter(None, (args.command, getattr(args, "stage", None))))
    try:
        return int(args._run(args) or 0)
    except (DataError, CheckpointError) as exc:
        print(f"rnnpose {command}: error: {' '.join(str(exc).splitlines())}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused a write or read that the checks allowed
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"rnnpose {command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rnnpose {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
