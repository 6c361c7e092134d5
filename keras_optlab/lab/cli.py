"""The `optlab` command: `compare`, `tune`, `find-lr` and `surface`.

`--backend` must set KERAS_BACKEND before keras is imported, and importing
keras_optlab imports keras: the package applies `--backend` from the
command line first (`keras_optlab._backend`), and `main` checks that it
took effect. Every keras import in the lab is inside a function, so the
parser itself needs no backend. Bad input (an unknown name, a value out of range, an output folder
that cannot be written) prints one line on stderr and exits with status 2;
nothing is left half-written.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Sequence

from keras_optlab._backend import BACKENDS
PROGRAM = "optlab"


class _BadArguments(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    # argparse prints the usage block and exits; the lab's rule is one line.
    def error(self, message):
        raise _BadArguments(f"{self.prog}: error: {message} (see --help)")


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _rate_pair(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected NAME=RATE such as adam=0.003, got {text!r}"
        ) from None


def _range_pair(text: str) -> tuple[str, tuple[float, float]]:
    name, sep, values = text.partition("=")
    low, comma, high = values.partition(",")
    try:
        if not sep or not comma:
            raise ValueError
        return name.strip(), (float(low), float(high))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected NAME=LOW,HIGH such as adam=1e-4,1e-2, got {text!r}"
        ) from None


def _common(parser: argparse.ArgumentParser, out: str, out_help: str | None = None) -> None:
    parser.add_argument("--backend", choices=BACKENDS,
                        help="Keras backend (sets KERAS_BACKEND). Default: KERAS_BACKEND, else Keras' own default.")
    parser.add_argument("--out", default=out, help=(out_help or "report folder, replaced if it is an old report") + f" (default: {out})")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


_DATA_HELP = (
    "digits (default), mnist1d, a .npz file with x_train, y_train, x_val, y_val "
    "and optionally x_test, y_test (scored only after training, never in a choice), "
    "or package.module:function returning such arrays"
)


def _model_help() -> str:
    from keras_optlab.lab.models import MODELS

    return (
        f"{', '.join(MODELS)} (default: mlp), on mnist1d the MNIST-1D paper's architectures; "
        "or package.module:function returning an uncompiled keras.Model"
    )


def _data_arguments(parser: argparse.ArgumentParser, user_data: bool = False) -> None:
    if user_data:
        parser.add_argument("--data", "--dataset", dest="data", default="digits", help=_DATA_HELP)
        parser.add_argument("--model", default="mlp", help=_model_help())
    else:
        from keras_optlab.lab.models import MODELS

        parser.add_argument("--dataset", default="digits", help="digits (default) or mnist1d")
        parser.add_argument("--model", default="mlp",
                            help=f"{', '.join(MODELS)} (default: mlp); on mnist1d, the MNIST-1D paper's architectures")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights and batch order (default: 0)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `optlab`."""
    parser = _Parser(
        prog=PROGRAM,
        description="Compare optimizers on real data, find a learning rate, and draw what happened.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    compare = commands.add_parser("compare", help="train one model with several optimizers from the same initial weights")
    _data_arguments(compare, user_data=True)
    compare.add_argument("--optimizers", type=_comma_list, default=None,
                         help="comma-separated candidates: registry names, optionally +schedule and +callback "
                              "such as adam+step or adam+plateau (default: the seed family, plus adam_then_sgd when registered)")
    compare.add_argument("--epochs", type=int, default=None, help="epochs per run (default: 20)")
    compare.add_argument("--batch-size", default=None, help="N (mini-batch), 1 (stochastic) or full (batch) (default: 32)")
    compare.add_argument("--seeds", type=int, default=1, help="repeat with this many seeds and report mean and spread (default: 1)")
    compare.add_argument("--learning-rate", type=_rate_pair, action="append", default=[], metavar="NAME=RATE",
                         help="override the registry's suggested rate for one optimizer; repeatable")
    compare.add_argument("--switch-epoch", type=int, default=None,
                         help="epoch at whose end adam_then_sgd switches to SGD (default: half of --epochs)")
    compare.add_argument("--jit-compile", choices=("auto", "on", "off"), default="auto",
                         help="XLA/jit for the train step (default: auto, Keras' choice)")
    compare.add_argument("--steps-per-execution", type=int, default=None, help="train steps per compiled call (default: 16; 1 on PyTorch, which accepts no other)")
    _common(compare, "optlab-report")

    tune = commands.add_parser(
        "tune", help="tune each candidate on a budget (Optuna study), then retrain the best over several seeds")
    tune.add_argument("--candidates", type=_comma_list, default=None,
                      help="comma-separated candidates such as adam,radam,adam+step,adam+plateau,nag+one_cycle; "
                           "NAME@default runs NAME at its defaults with no search, such as prodigy@default "
                           "(default: adam,radam,nag)")
    tune.add_argument("--budget", default="quick",
                      help="quick (8 trials, 3 seeds, 8 epochs; default), standard (25, 5, 20) or thorough (60, 10, 30)")
    tune.add_argument("--trials", type=int, default=None, help="finished trials per candidate (default: the budget's)")
    tune.add_argument("--seeds", type=int, default=None, help="evaluation seeds (default: the budget's)")
    tune.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the budget's)")
    tune.add_argument("--model", default="mlp", help=_model_help())
    tune.add_argument("--data", default="digits", help=_DATA_HELP)
    tune.add_argument("--loss", default=None, help="Keras loss name (default: from the labels)")
    tune.add_argument("--metric", default=None, help="validation metric to optimise, a Keras metric name or 'loss' (default: accuracy for classes, the loss otherwise)")
    tune.add_argument("--batch-size", type=int, default=32, help="examples per step with array data (default: 32)")
    tune.add_argument("--seed", type=int, default=0, help="tuning seed; evaluation uses the next --seeds seeds (default: 0)")
    tune.add_argument("--target", type=float, default=None, help="metric value whose epochs-to-reach are reported (default: the worst candidate's tuned mean)")
    tune.add_argument("--storage", default=None, help="database URL Optuna accepts, shared by workers (default: sqlite file study.sqlite3 in --out)")
    tune.add_argument("--study", default="optlab", help="study name; candidate C is study NAME/C (default: optlab)")
    tune.add_argument("--lr-range", type=_range_pair, action="append", default=[], metavar="NAME=LOW,HIGH",
                      help="learning-rate range of one candidate (default: registry suggestion /10 .. x10); repeatable")
    tune.add_argument("--heartbeat", type=int, default=None, metavar="SECONDS",
                      help="heartbeat interval of a running trial; one silent for 3 intervals is failed and retried (default: 10)")
    tune.add_argument("--jit-compile", choices=("auto", "on", "off"), default="auto", help="XLA/jit for the train step (default: auto)")
    tune.add_argument("--steps-per-execution", type=int, default=None, help="train steps per compiled call (default: 16; 1 on PyTorch)")
    _common(tune, "optlab-tune", "report folder, also holding the study unless --storage is given; "
                                 "its files are updated, others are kept")

    find_lr = commands.add_parser("find-lr", help="learning-rate range test (Smith 2017)")
    _data_arguments(find_lr)
    find_lr.add_argument("--optimizer", default="sgd", help="registry name (default: sgd)")
    find_lr.add_argument("--start-lr", type=float, default=None, help="first rate of the sweep (default: 1e-5)")
    find_lr.add_argument("--end-lr", type=float, default=None, help="last rate of the sweep (default: 10)")
    find_lr.add_argument("--steps", type=int, default=None, help="steps of the sweep (default: 200)")
    find_lr.add_argument("--batch-size", type=int, default=32, help="examples per step (default: 32)")
    _common(find_lr, "optlab-report-find-lr")

    surface = commands.add_parser("surface", help="optimizer trajectories on 2-D test functions")
    surface.add_argument("--function", default="rosenbrock", help="saddle, rosenbrock (default) or beale")
    surface.add_argument("--optimizers", type=_comma_list, default=None, help="comma-separated registry names (default: the seed family)")
    surface.add_argument("--steps", type=int, default=None, help="steps per optimizer (default: 300)")
    surface.add_argument("--start", type=_comma_list, default=None, metavar="X,Y", help="start point (default: the function's)")
    surface.add_argument("--learning-rate", type=_rate_pair, action="append", default=[], metavar="NAME=RATE",
                         help="override the function's rate for one optimizer; repeatable")
    surface.add_argument("--gif", action="store_true", help="also write an animated GIF")
    _common(surface, "optlab-report-surface")
    return parser


def _select_backend(backend: str | None) -> None:
    if backend is None:
        return
    loaded = sys.modules.get("keras")
    if loaded is not None and loaded.backend.backend() != backend:
        raise _BadArguments(
            f"{PROGRAM}: error: keras was imported with backend "
            f"{loaded.backend.backend()!r} before --backend {backend} could take effect"
        )
    os.environ["KERAS_BACKEND"] = backend


def _verbosity(quiet: bool) -> int:
    if quiet:
        return 0
    # A bar that redraws itself suits a terminal; a line per epoch suits logs.
    return 1 if sys.stdout.isatty() else 2


def _run_compare(args) -> None:
    from keras_optlab.lab import runs

    results = runs.compare(
        optimizers=args.optimizers,
        data=args.data,
        model=args.model,
        epochs=runs.DEFAULT_EPOCHS if args.epochs is None else args.epochs,
        batch_size=_batch_size(args.batch_size, runs.DEFAULT_BATCH_SIZE),
        seed=args.seed,
        seeds=args.seeds,
        learning_rates=dict(args.learning_rate),
        out=args.out,
        jit_compile={"auto": "auto", "on": True, "off": False}[args.jit_compile],
        steps_per_execution=args.steps_per_execution,
        verbose=_verbosity(args.quiet),
        switch_epoch=args.switch_epoch,
    )
    if not args.quiet:
        print()
        print(results.table(), end="")
    print(f"Report written to {os.path.abspath(args.out)}")


def _run_tune(args) -> None:
    from keras_optlab.lab import tuning

    results = tuning.tune(
        args.candidates,
        model=args.model,
        data=args.data,
        loss=args.loss,
        metric=args.metric,
        budget=args.budget,
        trials=args.trials,
        seeds=args.seeds,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        out=args.out,
        storage=args.storage,
        study=args.study,
        target=args.target,
        learning_rate_ranges=dict(args.lr_range),
        jit_compile={"auto": "auto", "on": True, "off": False}[args.jit_compile],
        steps_per_execution=args.steps_per_execution,
        heartbeat_interval=tuning.HEARTBEAT_INTERVAL if args.heartbeat is None else args.heartbeat,
        verbose=0 if args.quiet else 1,
    )
    if not args.quiet:
        print()
        print(results.table(), end="")
    print(f"Report written to {os.path.abspath(args.out)}")


def _batch_size(text: str | None, default: int) -> int | str:
    if text is None:
        return default
    if text == "full":
        return "full"
    try:
        return int(text)
    except ValueError:
        from keras_optlab.lab.errors import UsageError

        raise UsageError(
            "Argument `batch_size` must be an integer in [1, inf) or 'full'. "
            f"Received: batch_size={text!r}"
        ) from None


def _run_find_lr(args) -> None:
    from keras_optlab.lab import lr_range

    result = lr_range.find_lr_on_dataset(
        dataset=args.dataset,
        model=args.model,
        optimizer=args.optimizer,
        start_lr=args.start_lr,
        end_lr=args.end_lr,
        steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        out=args.out,
        verbose=0 if args.quiet else 1,
    )
    print(
        f"Suggested learning rate for {args.optimizer}: {result.suggested_learning_rate:.3g} "
        f"(steepest descent of the smoothed loss; {len(result.learning_rates)} steps, "
        f"{'stopped at divergence' if result.stopped_early else 'full sweep'})"
    )
    print(f"Report written to {os.path.abspath(args.out)}")


def _run_surface(args) -> None:
    from keras_optlab.lab import surfaces
    from keras_optlab.lab.errors import UsageError

    start = None
    if args.start is not None:
        try:
            start = tuple(float(v) for v in args.start)
        except ValueError:
            raise UsageError(f"Argument `start` must be two numbers X,Y. Received: start={','.join(args.start)!r}") from None
    surfaces.surface_report(
        function=args.function,
        optimizers=args.optimizers,
        steps=args.steps,
        start=start,
        learning_rates=dict(args.learning_rate),
        gif=args.gif,
        out=args.out,
        verbose=0 if args.quiet else 1,
    )
    print(f"Report written to {os.path.abspath(args.out)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Runs `optlab` with `argv` (default: the command line); returns the
    exit status: 0 done, 2 bad input."""
    started = time.perf_counter()
    try:
        args = build_parser().parse_args(argv)
        _select_backend(args.backend)
    except _BadArguments as error:
        print(error, file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from keras_optlab.lab.errors import UsageError

    command = {
        "compare": _run_compare, "tune": _run_tune, "find-lr": _run_find_lr, "surface": _run_surface,
    }[args.command]
    try:
        command(args)
    except UsageError as error:
        print(f"{PROGRAM} {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROGRAM}: interrupted; no report written", file=sys.stderr)
        return 130
    print(f"Total wall time: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
