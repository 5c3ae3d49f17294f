"""``rnnpose train ae|rmpp``: the two training stages (AE network first, then the RMPP decoder
on its frozen features, as in section 3.3). Each stage's module exposes ``add_arguments`` and
``run``; this package only dispatches."""

from __future__ import annotations

import argparse
import importlib

STAGES: dict[str, tuple[str, str]] = {
    "ae": ("rnnpose.train.ae", "train the stacked-hourglass Associative-Embedding network"),
    "rmpp": ("rnnpose.train.rmpp", "train the recurrent decoder on a frozen AE (Algorithm 1)"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, (module_name, help_text) in STAGES.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_stage_run=module.run)


def run(args: argparse.Namespace) -> int:
    return int(args._stage_run(args) or 0)
