"""Command line: one sub-command per pipeline stage, plus ``anonymize``, ``audit`` and ``run``.

Results go to stdout (one line per stage, the verdict, the audit's figures); diagnostics (progress
bars, log messages, errors) go to stderr, so ``latentanon audit ... > result.txt`` keeps only the
result. Exit status: 0 done, 1 an unexpected error (a bug), 2 a usage error (option or setting),
3 bad input, 4 a failed check (latentanon.errors)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from latentanon import __version__, stages
from latentanon.config import ConfigError, load_params
from latentanon.environment import OFFLINE_ENV
from latentanon.errors import EXIT_OK, EXIT_USAGE, LatentanonError


def _add_params_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one param (repeatable), e.g. --set data.root=/tmp/bench",
    )
    p.add_argument("--no-tracking", action="store_true", help="do not log this stage to MLflow")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="latentanon", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in stages.PIPELINE:
        p = sub.add_parser(name.replace("_", "-"), aliases=[name] if "_" in name else [], help=f"run the {name} stage")
        _add_params_args(p)
        if name == "extract":
            p.add_argument("--worker", type=int, default=0, help="this worker's index (fan-out)")
            p.add_argument("--num-workers", type=int, default=1, help="number of parallel workers")
            p.add_argument("--no-finalize", action="store_true", help="leave the index to finalize-extract")
        p.set_defaults(stage=name)
    p = sub.add_parser("finalize-extract", help="join parallel extraction shards into the store index")
    _add_params_args(p)
    p.set_defaults(stage="finalize_extract")
    p = sub.add_parser("run", help="run every stage in order (what dvc repro does, without caching)")
    _add_params_args(p)
    p.add_argument(
        "--from",
        dest="start",
        default=None,
        help="first stage to run, e.g. --from validate for data you brought (skips generate)",
    )
    p.set_defaults(stage="run")
    p = sub.add_parser("anonymize", help="apply a gate-approved registered method (@champion) to a feature store")
    p.add_argument(
        "--model",
        required=True,
        help="e.g. models:/latentanon-aam@champion (exists only after the gate approved a model)",
    )
    p.add_argument("--features", required=True, help="source store (path or s3:// URI)")
    p.add_argument("--out", required=True, help="destination store (path or s3:// URI)")
    p.add_argument(
        "--params",
        default="params.yaml",
        help="params file naming the registry (tracking section) and workdir; "
        "default params.yaml when present, else the defaults",
    )
    p.set_defaults(stage="anonymize")
    p = sub.add_parser("verdict", help="the last gate decision, its reasons, and what to commit")
    _add_params_args(p)
    p.set_defaults(stage="verdict")
    p = sub.add_parser("tracking-uri", help="print the MLflow tracking URI every command uses, and why")
    _add_params_args(p)
    p.add_argument("--quiet", action="store_true", help="print the URI only")
    p.set_defaults(stage="tracking_uri")
    p = sub.add_parser("audit", help="how much a labelled feature store leaks: the evaluate stage's attack suite")
    p.add_argument("--features", required=True, help="store with private-attribute labels (path or s3:// URI)")
    p.add_argument("--out", default="reports/audit", help="folder for audit.json and audit.md (default: reports/audit)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated attacker seeds (default: 0,1,2)")
    p.add_argument("--confidence", type=float, default=0.95, help="interval confidence (default: 0.95)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the test items")
    p.add_argument(
        "--method",
        default=None,
        help="a saved method's folder (e.g. models/method): also attack its re-releases of the clips",
    )
    p.set_defaults(stage="audit")
    return parser


def _print_summary(stage: str, summary: dict, seconds: float) -> None:
    print(f"[{stage}] {stages.key_result(stage, summary)} ({seconds:.1f}s)", flush=True)


def _params_or_defaults(path: str, overrides: list[str]):
    """The params file when it exists; a missing default file means the built-in defaults."""
    from pathlib import Path

    from latentanon.config import params_from_dict

    if path == "params.yaml" and not Path(path).exists():
        return params_from_dict({}, overrides)
    return load_params(path, overrides)


def main(argv: list[str] | None = None) -> int:
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    args = build_parser().parse_args(argv)
    # Library log messages are diagnostics: stderr, never mixed into the results on stdout.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s: %(levelname)s: %(message)s")
    try:
        if args.stage == "anonymize":
            t0 = time.perf_counter()
            params = _params_or_defaults(args.params, [])
            summary = stages.anonymize(args.model, args.features, args.out, params)
            _print_summary("anonymize", summary, time.perf_counter() - t0)
            return 0
        if args.stage == "tracking_uri":
            from latentanon.tracking.uri import source_of

            params = _params_or_defaults(args.params, args.overrides)
            uri = stages.tracking_uri_for(params)
            print(uri if args.quiet else f"{uri}  (from {source_of(params.tracking.tracking_uri)})")
            return 0
        if args.stage == "audit":
            try:
                seeds = [int(v) for v in args.seeds.split(",") if v.strip()]
            except ValueError as exc:
                raise ConfigError(f"--seeds {args.seeds!r}: expected integers separated by commas") from exc
            summary = stages.audit(args.features, args.out, seeds, args.confidence, args.bootstrap, args.method)
            print(
                f"[audit] report: {summary['report']}; cMAP {summary['cmap']} (chance {summary['chance']})", flush=True
            )
            return EXIT_OK
        params = load_params(args.params, args.overrides)
        if args.stage == "verdict":
            print(stages.verdict_text(stages.verdict(params)))
            return 0
        if args.stage == "run":
            names = list(stages.PIPELINE)
            if args.start:
                start = args.start.replace("-", "_")
                if start not in names:
                    raise ConfigError(f"--from {args.start}: unknown stage; stages: {', '.join(names)}")
                names = names[names.index(start) :]
        else:
            names = [args.stage]
        for name in names:
            kwargs = {}
            if name == "extract":
                kwargs = {
                    "worker": getattr(args, "worker", 0),
                    "num_workers": getattr(args, "num_workers", 1),
                    "finalize": not getattr(args, "no_finalize", False),
                }
            summary = stages.execute(name, params, track=not args.no_tracking, **kwargs)
            _print_summary(name, summary, summary["seconds"])
    except ConfigError as exc:
        print(f"latentanon: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LatentanonError as exc:
        print(f"latentanon: error: {exc}", file=sys.stderr)
        return exc.exit_status
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
