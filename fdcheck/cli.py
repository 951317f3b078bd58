"""The ``fdcheck`` command.

``fdcheck train --d 32 --seed 0 --augment mask --bias schedule --out run.npz`` trains one network
(:func:`fdcheck.train.train`) on ``ModelConfig.scaled(d)`` with any field overridden by its flag, writes the
result (``W``, ``b``, ``W0``, ``M``, ``config`` as JSON, ``history`` as JSON; ``numpy.load(allow_pickle=False)``
reads it) and prints the trained network's metrics (``fdcheck.metrics.measure_all`` on the run's evaluation
stream). Exit status: 0 on success, 1 when training diverged or measuring failed (the file is still written in
the latter case), 2 on bad usage (the message names the parameter).

``fdcheck verify --out DIR [--d 16,32,64] [--seeds 3] [--quick] [--backend numpy|cupy] [--scheduler ADDRESS]``
checks every claim of :mod:`fdcheck.claims` (see :func:`fdcheck.verify.run_verify`): exit 0 when every claim
passes or fails as declared expected, 1 otherwise, 2 on bad usage (DESIGN.md). ``fdcheck report --from DIR``
rewrites the report of such a directory: exit 0 when written, 1 when it failed, 2 on bad usage.

Bad usage (a value out of range, an unknown field) is detected before any work; an error during the work itself
exits 1 with its message.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import sys
from typing import Any, Callable, Sequence

from .config import ModelConfig

__all__ = ["build_parser", "main"]

# Shown in the usage line; the values are validated by ModelConfig, whose message names the parameter.
_CHOICES = {"augment": "{mask,none,supervised}", "bias": "{schedule,none}", "dtype": "{float32,float64}",
            "backend": "{numpy,cupy}"}


class _UsageError(Exception):
    """Bad command-line usage: printed with the usage line of ``parser``, exit status 2."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class _BadValue(ValueError):
    """A value the user gave is invalid: exit status 2 (raised only before any work starts)."""


def _validated(build: Callable[[], Any]) -> Any:
    """Run the validation step ``build``; its ``ValueError`` is bad usage."""
    try:
        return build()
    except ValueError as exc:
        raise _BadValue(str(exc)) from exc


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that raises instead of exiting, so :func:`main` returns the status."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(self, f"{self.prog}: error: {message}")


def _train_help() -> dict[str, str]:
    return {
        "d": "sparse-code dimension d (the scaled regime follows from it)",
        "d1": "input dimension d1",
        "m": "number of neurons",
        "p": "probability that a coordinate of z is non-zero",
        "noise_variance": "variance of each noise coordinate",
        "tau": "temperature of the contrastive loss",
        "lam": "weight decay λ (objective term λ Σ||w_i||²)",
        "eta": "SGD step size",
        "init_std": "standard deviation of the initial weights",
        "batch": "positive pairs per step",
        "negatives": "negatives per step",
        "steps": "SGD steps",
        "augment": "mask (RandomMask), none, or supervised (linear head on z)",
        "keep_prob": "RandomMask keep probability",
        "include_positive": "put the positive pair in the loss's denominator",
        "bias": "schedule (footnote 3) or none (b = 0)",
        "t1": "step at which the bias schedule starts",
        "bias_init_factor": "b_i = factor · sqrt(2 log d / d) · ||w_i|| at t1",
        "bias_cap_factor": "cap: b_i <= factor · ||w_i||",
        "bias_growth_min": "minimum relative bias growth per step",
        "eval_every": "steps between history rows",
        "seed": "random seed (dictionary, initialisation, training samples, evaluation)",
        "dtype": "float32 or float64",
        "backend": "numpy or cupy",
    }


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per ModelConfig field (``--noise-variance`` and ``--noise_variance`` both work)."""
    helps = _train_help()
    for f in dataclasses.fields(ModelConfig):
        names = [f"--{f.name.replace('_', '-')}"]
        is_bool = f.type in (bool, "bool")
        if "_" in f.name and not is_bool:
            names.append(f"--{f.name}")
        help_ = helps.get(f.name, f.name)
        if f.name == "d":
            p.add_argument(*names, dest="d", type=_int("d"), default=32, help=f"{help_} (default 32)")
        elif is_bool:
            p.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif f.type in (int, "int"):
            p.add_argument(*names, dest=f.name, type=_int(f.name), default=None, metavar="N", help=help_)
        elif f.type in (float, "float"):
            p.add_argument(*names, dest=f.name, type=_float(f.name), default=None, metavar="X", help=help_)
        else:
            p.add_argument(*names, dest=f.name, default=None, metavar=_CHOICES.get(f.name, "TEXT"), help=help_)


def _int(name: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{name.replace('_', '-')}={text!r} must be an integer") from None
    return parse


def _float(name: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{name.replace('_', '-')}={text!r} must be a number") from None
    return parse


def build_parser() -> argparse.ArgumentParser:
    """The ``fdcheck`` parser with its subcommands ``train``, ``verify`` and ``report``."""
    parser = _Parser(prog="fdcheck", description="Executable checks of Wen & Li (ICML 2021), contrastive learning "
                                                 "and feature decoupling.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    t = sub.add_parser("train", help="train one network and print its metrics",
                       description="Train the paper's network on ModelConfig.scaled(d) with any field overridden, "
                                   "write FILE.npz and print the metrics.")
    _add_config_flags(t)
    t.add_argument("--out", required=True, metavar="FILE.npz", help="where to write the trained network")
    t.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    t.add_argument("--checkpoint", default=None, metavar="FILE.npz",
                   help="checkpoint file: written during training, resumed from when it exists")
    t.add_argument("--checkpoint-every", type=_int("checkpoint_every"), default=None, metavar="N",
                   help="steps between checkpoints (default: eval_every)")
    t.add_argument("--threads", type=_int("threads"), default=None, metavar="N",
                   help="threads drawing random numbers (the result does not depend on it)")
    t.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    t.set_defaults(handler=_cmd_train)

    v = sub.add_parser("verify", help="check every claim of the paper across d and seeds, write claims.json and "
                                      "the report",
                       description="Train the grid d × seed × variant (resuming what OUT/store already holds), "
                                   "evaluate every claim of fdcheck.claims and write OUT/claims.json, "
                                   "OUT/report.md, OUT/report.html and OUT/figures/. Exit 0 when every claim passes "
                                   "(or fails as declared expected), 1 otherwise, 2 on bad usage.")
    v.add_argument("--out", default="fdcheck-report", metavar="DIR", help="output directory (default: %(default)s)")
    v.add_argument("--d", type=_int_list("d"), default=None, metavar="D,D,...",
                   help="dimensions d (default: 16,32,64; with --quick 12,16,24)")
    v.add_argument("--seeds", type=_int("seeds"), default=None, metavar="N",
                   help="seeds 0..N-1 per d and variant (default: 3; with --quick 2)")
    v.add_argument("--backend", default="numpy", metavar="{numpy,cupy}", help="array backend (default: numpy)")
    v.add_argument("--quick", action="store_true", help="the small grid (about 2 minutes on two cores)")
    v.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on a Dask cluster: tcp://host:port, or 'local' for a local Dask cluster "
                        "(default: local processes)")
    v.add_argument("--set", dest="overrides", action="append", type=_assignment, default=[], metavar="FIELD=VALUE",
                   help="override a ModelConfig field in every run, e.g. --set steps=2000 --set eta=0.1 "
                        "(repeatable; d, seed, augment and bias are set by the grid)")
    v.add_argument("--d1", dest="d1_rule", choices=("scaled", "square"), default="scaled",
                   help="input dimension: scaled (d1 = 16 d, the measured regime) or square (d1 = d², memory "
                        "allowing; outside the measured regime: the input energy d1σ² then grows like d√log d, so "
                        "eta and init_std may need --set)")
    v.add_argument("--retry-errors", action="store_true",
                   help="recompute runs whose stored record is an error (by default a failed run is kept, so a "
                        "deterministic failure is not recomputed on every resume)")
    v.add_argument("--workers", type=_int("workers"), default=2, metavar="N",
                   help="worker processes for the local executors (default: %(default)s)")
    v.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    v.set_defaults(handler=_cmd_verify)

    r = sub.add_parser("report", help="rewrite the report of a verify output directory",
                       description="Rewrite DIR/report.md, DIR/report.html and DIR/figures/ from DIR/claims.json "
                                   "and its results store.")
    r.add_argument("--from", dest="source", required=True, metavar="DIR", help="the output directory of verify")
    r.set_defaults(handler=_cmd_report)
    return parser


def _int_list(name: str) -> Callable[[str], list[int]]:
    def parse(text: str) -> list[int]:
        try:
            return [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{name}={text!r} must be integers separated by commas") from None
    return parse


def _assignment(text: str) -> tuple[str, Any]:
    """``FIELD=VALUE`` with VALUE read as an int, a float, true/false, or else a string."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--set {text!r} must look like FIELD=VALUE")
    value: Any = raw
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    else:
        for kind in (int, float):
            try:
                value = kind(raw)
                break
            except ValueError:
                continue
    return name.replace("-", "_"), value


def _cmd_verify(args: argparse.Namespace) -> int:
    from .verify import DEFAULT_GRID, QUICK_GRID, Grid, check_backend, run_verify, verdict_table

    def build() -> Grid:
        base = QUICK_GRID if args.quick else DEFAULT_GRID
        grid = Grid(d=tuple(args.d) if args.d else base.d,
                    seeds=args.seeds if args.seeds is not None else base.seeds,
                    overrides=tuple(args.overrides), d1_rule=args.d1_rule)
        check_backend(args.backend)
        if args.workers < 1:
            raise ValueError(f"workers={args.workers} is out of range; allowed: [1, inf)")
        grid.specs(args.backend)  # every configuration of the grid is validated before any work
        return grid

    grid = _validated(build)
    document, code = run_verify(args.out, grid, backend=args.backend, scheduler=args.scheduler,
                                workers=args.workers, progress=args.progress, retry_errors=args.retry_errors,
                                command=shlex.join(["fdcheck", *args.argv]), quick=args.quick)
    print(verdict_table(document))
    print(f"\nwrote {args.out}/claims.json, report.md, report.html and figures/ in {document['seconds']:.0f} s; "
          f"exit {code}")
    return code


def _cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .report import report_from_dir

    if not (Path(args.source) / "claims.json").is_file():
        raise _BadValue(f"--from {args.source!r} holds no claims.json; expected the output directory of fdcheck verify")
    paths = report_from_dir(args.source)
    print(f"wrote {paths['markdown']}, {paths['html']} and {paths['figures']}/")
    return 0


def _config_from_args(args: argparse.Namespace) -> ModelConfig:
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in names and k != "d" and v is not None}
    return ModelConfig.scaled(args.d, **overrides)


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import blas_thread_limit

    config = _validated(lambda: _config_from_args(args))  # exit 2 before any work
    if args.checkpoint_every is not None and args.checkpoint is None:
        raise _BadValue("--checkpoint-every needs --checkpoint")
    with blas_thread_limit():  # the probes of measure_all are small BLAS work too
        return _train_and_report(config, args)


def _train_and_report(config: ModelConfig, args: argparse.Namespace) -> int:
    from .train import TrainingDiverged, make_model, train

    try:
        result = train(config, progress=args.progress, checkpoint_path=args.checkpoint,
                       checkpoint_every=args.checkpoint_every, threads=args.threads)
    except TrainingDiverged as exc:
        print(f"fdcheck train: {exc}", file=sys.stderr)
        return 1
    result.save_npz(args.out)
    try:
        metrics, source = _metrics(result, make_model)
    except Exception as exc:  # the trained network is saved; say what failed and show what training recorded
        print(f"fdcheck train: wrote {args.out}, but measuring it failed: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        metrics, source, status = dict(result.history[-1]), "last history row (measure_all failed)", 1
    else:
        status = 0
    if args.json:
        print(json.dumps({"out": args.out, "seconds": result.seconds, "metrics_source": source, "metrics": metrics},
                         sort_keys=True))
    else:
        print(f"wrote {args.out}  ({config.steps} steps, {result.seconds:.1f} s; d={config.d} d1={config.d1} "
              f"m={config.m} augment={config.augment} bias={config.bias} seed={config.seed})")
        print(f"metrics ({source}):")
        width = max((len(k) for k in metrics), default=0)
        for key, value in metrics.items():
            print(f"  {key:<{width}}  {_fmt(value)}")
    return status


def _metrics(result: Any, make_model: Callable[..., Any]) -> tuple[dict[str, Any], str]:
    """``metrics.measure_all`` on the trained network with the run's eval stream."""
    from .metrics import measure_all

    model, rngs = make_model(result.config, M=result.M)
    metrics = measure_all(result.W, result.b, result.W0, model, result.config, rngs["eval"], head=result.head)
    return dict(metrics), "fdcheck.metrics.measure_all"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fdcheck`` command with ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
        args.argv = argv  # the command as given, recorded at the top of the report
    except _UsageError as exc:
        exc.parser.print_usage(sys.stderr)
        print(exc, file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help and --version exit through argparse
        return int(exc.code or 0)
    try:
        return int(args.handler(args))
    except _BadValue as exc:
        print(f"fdcheck {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"fdcheck {args.command}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fdcheck {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
