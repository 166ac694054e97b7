"""Entry point of the `automl` command: argument parsing and dispatch.

Every subcommand function takes the parsed arguments and a `Context` and
returns the exit status. Failures print one message to stderr and exit 1;
argparse exits 2 on usage errors. Set `AUTOML_DEBUG=1` to get the traceback
of an unexpected error instead of its one-line summary.
"""

from __future__ import annotations

import argparse
import os
import sys

from automl.cli import compute, data, experiments, explanations, iterations
from automl.cli.client import Context
from automl.cli.errors import describe_exception
from automl.common import config

EPILOG = """\
addresses come from AUTOML_EXPERIMENT_ADDRESS and AUTOML_COMPUTE_ADDRESS (default 127.0.0.1:50051 and :50052);
the object store from S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY and S3_BUCKET.

example:
  automl compute create automl-cluster --vm-size STANDARD_DS2_V2 --min-nodes 0 --max-nodes 2
  automl data upload digits.csv
  automl experiment submit --data s3://automl/datasets/digits.csv --label digit \\
      --compute automl-cluster --task classification --metric AUC_weighted --iterations 20 --cv 5
"""


def address_flags(suppress_defaults: bool) -> argparse.ArgumentParser:
    """Build a parent parser with the service address flags.

    Subcommands get the flags with suppressed defaults, so a flag given after
    the subcommand overrides the top-level value and an absent one keeps it.
    """
    parent = argparse.ArgumentParser(add_help=False)
    experiment_default = argparse.SUPPRESS if suppress_defaults else config.address("experiment")
    compute_default = argparse.SUPPRESS if suppress_defaults else config.address("compute")
    parent.add_argument("--experiment-address", default=experiment_default, metavar="HOST:PORT",
                        help="ExperimentService address (default $AUTOML_EXPERIMENT_ADDRESS or 127.0.0.1:50051)")
    parent.add_argument("--compute-address", default=compute_default, metavar="HOST:PORT",
                        help="ComputeService address (default $AUTOML_COMPUTE_ADDRESS or 127.0.0.1:50052)")
    return parent


def build_parser() -> argparse.ArgumentParser:
    """Build the parser of every command; defaults read the environment at call time."""
    parser = argparse.ArgumentParser(
        prog="automl",
        description="Run automated machine learning experiments on AutoML Services.",
        parents=[address_flags(suppress_defaults=False)],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = address_flags(suppress_defaults=True)
    for module in (compute, data, experiments, iterations, explanations):
        module.register(subparsers, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one `automl` command and return its exit status.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; `sys.argv[1:]` by default.
    """
    args = build_parser().parse_args(argv)
    ctx = Context(args.experiment_address, args.compute_address)
    try:
        return args.func(args, ctx)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (e.g. `| head`); stop quietly.
        sys.stdout = open(os.devnull, "w")
        return 1
    except Exception as error:
        message = describe_exception(error, ctx.s3_settings.endpoint)
        if message is None:
            if os.environ.get("AUTOML_DEBUG"):
                raise
            message = (f"error: unexpected {type(error).__name__}: {error}; "
                       "rerun with AUTOML_DEBUG=1 for the traceback and report it")
        print(message, file=sys.stderr)
        return 1
    finally:
        ctx.close()


if __name__ == "__main__":
    sys.exit(main())
