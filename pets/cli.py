"""The ``pets`` command line: list, check, describe, party, run, demo, bench, report, env."""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from pets.network import NetworkProfile, parse_profile
from pets.options import OptionError, available_cores

__all__ = ["main"]


def _value(text: str) -> Any:
    """Parse a ``--param`` value as TOML (numbers, booleans, strings, lists)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _params(pairs: Sequence[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise OptionError("params", f"takes KEY=VALUE, got {pair!r}")
        out[key.strip()] = _value(value.strip())
    return out


def _cmd_list(args: argparse.Namespace) -> int:
    from pets.registry import Registry
    from pets.scenarios import find_scenarios, load_scenario

    if args.what in ("scenarios", "all"):
        print("Scenarios:")
        for sid in find_scenarios():
            card = load_scenario(sid)
            print(f"  {sid:32s} {card.kind:10s} {card.title}")
    if args.what in ("backends", "all"):
        from pets.runtime.harness import PartyLauncher, PartyProgramError, describe_backends

        registry = Registry.from_entry_points()
        print("Backends:")
        broken = {}
        names = registry.names()
        # plugins are imported in a throwaway party process, never in this one
        answers = describe_backends(
            PartyLauncher(), [(registry.target(n), {}) for n in names], import_only=True
        )
        for name, answer in zip(names, answers, strict=True):
            if isinstance(answer, PartyProgramError):
                broken[name] = f"{registry.target(name)}: {answer}"
            else:
                print(f"  {name:32s} {registry.target(name)}")
        if broken or registry.refused():
            print("Broken or refused backend plugins (not run):")
            for name, why in {**broken, **registry.refused()}.items():
                print(f"  {name:32s} {why}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from pets.registry import Registry, UnknownBackend
    from pets.testing.kit import check_backend, format_results
    from pets.testing.verdicts import record_verdict

    registry = Registry.from_entry_points()
    params = _params(args.param)
    worst = 0
    for name in args.names:
        try:
            cls = registry.load(name)
        except UnknownBackend as exc:
            print(f"pets: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:  # a plugin that fails to import is a failed check
            print(f"{name}: cannot be loaded: {type(exc).__name__}: {exc}")
            worst = 1
            continue
        unknown = sorted(set(params) - set(cls.param_names()))
        if unknown:
            print(
                f"pets: {name} has no parameter {unknown[0]!r}; parameters: "
                f"{', '.join(cls.param_names()) or '(none)'}",
                file=sys.stderr,
            )
            return 2
        backend = cls(**params)
        results = check_backend(backend, env_name=name)
        print(f"{name} ({registry.target(name)}) {backend.get_params()}")
        print(format_results(results))
        failed = any(r.status == "failed" for r in results)
        path = record_verdict(name, registry.target(name), backend.get_params(), results)
        verdict = "FAILED" if failed else "passed"
        print(f"verdict: {verdict} (kept in {path})\n")
        worst = max(worst, int(failed))
    return worst


def _cmd_env(args: argparse.Namespace) -> int:
    from pets.envs import env_report, sync_backends
    from pets.registry import Registry

    registry = Registry.from_entry_points()
    if args.action == "list":
        print("\n".join(env_report(registry)))
        return 0

    def progress(line: str) -> None:
        print(line, file=sys.stderr if line.startswith("pets:") else sys.stdout, flush=True)

    return sync_backends(registry, args.names, progress=progress)


def _cmd_party(args: argparse.Namespace) -> int:
    from pets.options import check_param_keys, check_size
    from pets.registry import Registry
    from pets.runtime.hosts import run_on_host, summary
    from pets.scenarios import build_problem, load_scenario

    try:
        size = check_size(args.size)
        scenario = load_scenario(args.scenario)
        cls = Registry.from_entry_points().load(args.backend)
        overrides = _params(args.param)
        check_param_keys(overrides, {args.backend: set(cls.param_names())})
        backend = cls(**{**scenario.backend_params.get(args.backend, {}), **overrides})
        problem = build_problem(scenario, size or scenario.data.quick_size, seed=args.seed)
        party = run_on_host(backend, problem, args.party, args.hosts)
    except (OptionError, KeyError, TypeError, ValueError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"pets: {message}", file=sys.stderr)
        return 2
    print(json.dumps(summary(party, problem, scenario)))
    return 0


def _cmd_describe(args: argparse.Namespace) -> int:
    from pets.registry import Registry, unknown_name_message
    from pets.scenarios import find_scenarios, load_scenario

    cards = find_scenarios()
    registry = Registry.from_entry_points()
    if args.name in cards or args.name.endswith(".toml"):
        card = load_scenario(args.name)
        print(f"{card.id}: {card.title}\n\n{card.summary}\n")
        print(f"task kind: {card.kind}")
        print("parties:   " + ", ".join(f"{p.name} ({p.role})" for p in card.parties))
        print(
            f"data:      {card.data.source}, {card.data.size} patients "
            f"(quick {card.data.quick_size}), holdout {card.data.holdout}, "
            f"split {card.data.split['method']}"
        )
        print("attackers: " + ", ".join(card.attackers))
        for sweep in card.sweeps:
            print(f"sweep:     {sweep.backend}.{sweep.param} = {list(sweep.values)}")
        for q in card.questions:
            print(f"question:  {q}")
        if card.story:
            print(f"story:     {card.story}")
        return 0
    if args.name in registry:
        cls = registry.load(args.name)
        caps = cls().capabilities
        print(f"{args.name}: {registry.target(args.name)}")
        print((cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "")
        print("parameters: " + json.dumps(cls.param_defaults()))
        print("capabilities: " + json.dumps(caps.to_dict(), indent=2))
        return 0
    known = list(cards) + registry.names()
    print("pets: " + unknown_name_message("scenario or backend", args.name, known), file=sys.stderr)
    return 2


_FORMATS = {"html": ("html",), "md": ("md",), "both": ("html", "md")}


def _write_reports(out: Path, formats: Sequence[str]) -> list[Path]:
    from pets.report import write_report

    return write_report(out, formats)


def _cmd_report(args: argparse.Namespace) -> int:
    from pets.records import StoreError

    try:
        written = _write_reports(Path(args.run_dir), _FORMATS[args.format])
    except (FileNotFoundError, StoreError) as exc:
        print(f"pets: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"report:     {path}")
    return 0


def _remember_command(out: Path, argv: Sequence[str] | None) -> None:
    """Keep the command line in the manifest and the cards in the run folder, so the
    folder alone rebuilds its report."""
    from pets.records import ResultStore
    from pets.report import keep_cards

    store = ResultStore(out)
    manifest = store.read_manifest()
    if manifest:
        manifest["command"] = ["pets", *(sys.argv[1:] if argv is None else argv)]
        store.write_manifest(manifest)
    keep_cards(out)


def _run(args: argparse.Namespace, *, demo: bool) -> int:
    from pets.records import StoreError
    from pets.registry import Registry, UnknownBackend
    from pets.report import scorecard_text
    from pets.runner import run
    from pets.tasks import CardError

    registry = Registry.from_entry_points()
    try:
        frame = run(
            scenarios=args.scenarios or None,
            backends=args.backend or None,
            params=_params(args.param),
            size=args.size,
            sizes=args.sizes,
            quick=demo or args.quick,
            seeds=args.seeds,
            repeats=args.repeats,
            out=args.out,
            resume=args.resume,
            allow_changed=args.allow_changed,
            timeout=args.timeout,
            memory_mb=args.memory_mb,
            jobs=args.jobs,
            leakage=args.leakage,
            executor=args.executor,
            registry=registry,
            progress=not args.no_progress,
            network=args.network,
            warm=not args.cold_start,
        )
    except (
        CardError,
        OptionError,
        UnknownBackend,
        KeyError,
        FileExistsError,
        FileNotFoundError,
        StoreError,
    ) as exc:
        print(f"pets: {exc}", file=sys.stderr)
        return 2
    out = Path(frame.attrs["out"])
    try:
        _remember_command(out, args.argv)
        written = _write_reports(out, ("html", "md"))
    except StoreError as exc:
        print(f"pets: {exc}", file=sys.stderr)
        return 2
    print(scorecard_text(frame))
    counts = frame["status"].value_counts().to_dict() if len(frame) else {}
    print("\n" + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    print(f"run folder: {out}")
    for path in written:
        print(f"report:     {path}")
    bad = ("failed", "party_failed", "timeout")
    return 0 if not any(counts.get(s, 0) for s in bad) else 1


def _cmd_bench(args: argparse.Namespace) -> int:
    from pets.bench import (
        BenchSettings,
        ScalingError,
        check_only,
        ratio_table,
        run_bench,
        run_scaling,
        scaling_table,
    )
    from pets.bench.suite import default_bench_folder
    from pets.options import check_count, check_out
    from pets.records import StoreError
    from pets.tasks import CardError

    try:
        names = check_only(args.only)
        if args.repeats is not None:
            check_count("repeats", args.repeats, "repeats")
        if args.backend and not args.scaling:
            raise OptionError("--backend", "applies only with --scaling")
        if args.size is not None and args.scaling:
            raise OptionError("--size", "does not apply with --scaling (the sweep sets sizes)")
        out = Path(args.out) if args.out else default_bench_folder()
        if args.scaling:
            if args.only:
                raise OptionError("--only", "does not apply with --scaling")
            fits, folder = run_scaling(
                args.scaling, out=out, backends=args.backend, repeats=args.repeats or 1
            )
            print(f"log-log slope of cost against patients (records of {folder}):")
            print(scaling_table(fits))
            print("slope 1: cost proportional to patients; near 0: fixed costs dominate")
            return 0
        settings = BenchSettings.for_mode(
            quick=args.quick, repeats=args.repeats, cell_size=args.size
        )
        taken = run_bench(names, settings, check_out(out))
    except (OptionError, ScalingError, CardError, KeyError, StoreError) as exc:
        print(f"pets: {exc}", file=sys.stderr)
        return 2
    print()
    print(ratio_table(taken))
    print(f"\nbench folder: {out} (bench.jsonl: one line per ratio)")
    return 0


def _sizes(text: str) -> list[int]:
    """Parse ``--sizes 1000,10_000`` into whole numbers (checked further by the run)."""
    out = []
    for part in text.split(","):
        try:
            out.append(int(part.strip()))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"takes whole numbers of patients separated by commas, got {part.strip()!r}"
            ) from None
    return out


def _network_profile(text: str) -> NetworkProfile:
    try:
        return parse_profile(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


#: The measurements of ``pets bench`` (kept here so ``--help`` imports nothing heavy;
#: tests check it matches :data:`pets.bench.MEASUREMENTS`).
_BENCH_NAMES = (
    "cohort_rate",
    "ckks_packing",
    "paillier_packing",
    "mpyc_vectorised",
    "harness_overhead",
    "per_cell_overhead",
    "warm_start",
    "secure_vs_pandas",
)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pets", description="Compare privacy-enhancing technologies on health scenarios."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list scenarios and backends")
    p.add_argument("what", nargs="?", choices=["scenarios", "backends", "all"], default="all")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser(
        "check", help="run the conformance kit on backends; exit 1 if a check failed"
    )
    p.add_argument("names", nargs="+", metavar="NAME", help="registered backend names")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="backend parameter to check with (repeatable; default: its defaults)",
    )
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser(
        "party", help="run one party of a socket backend's cell here, on a host of its own"
    )
    p.add_argument("scenario", metavar="SCENARIO", help="scenario id or card path")
    p.add_argument("--backend", required=True, help="a socket backend (mpyc, mpyc+opendp)")
    p.add_argument("--party", required=True, help="the party this host runs")
    p.add_argument(
        "--hosts",
        action="append",
        required=True,
        metavar="HOST:PORT",
        help="every party's address in party order (repeatable or comma-separated)",
    )
    p.add_argument("--size", type=int, default=None, help="patients (default: quick size)")
    p.add_argument("--seed", type=int, default=0, help="the cell's seed (default 0)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=_cmd_party)

    p = sub.add_parser("describe", help="describe a scenario card or a backend")
    p.add_argument("name")
    p.set_defaults(func=_cmd_describe)

    for name, helptext in (
        ("run", "run scenarios x backends and write a run folder"),
        ("demo", "quick run of every installed backend on every card"),
    ):
        p = sub.add_parser(name, help=helptext)
        if name == "run":
            p.add_argument(
                "scenarios",
                nargs="*",
                metavar="SCENARIO",
                help="scenario ids or card paths (default: all)",
            )
            p.add_argument(
                "--backend",
                action="append",
                default=[],
                help="backend name (repeatable; default: all installed)",
            )
            p.add_argument(
                "--param",
                action="append",
                default=[],
                metavar="KEY=VALUE",
                help="backend parameter, overriding cards and sweeps (repeatable)",
            )
            p.add_argument("--size", type=int, help="patients per cell")
            p.add_argument(
                "--sizes",
                type=_sizes,
                metavar="N,N,...",
                help="a size sweep: one cell per size (default: the card's sizes, if any)",
            )
            p.add_argument("--quick", action="store_true", help="use each card's quick size")
            p.add_argument("--seeds", type=int, default=1)
            p.add_argument("--repeats", type=int, default=1)
        else:
            p.set_defaults(
                scenarios=[],
                backend=[],
                param=[],
                size=None,
                sizes=None,
                quick=True,
                seeds=1,
                repeats=1,
            )
        p.add_argument("--out", help="run folder (default results/<timestamp>)")
        p.add_argument("--resume", action="store_true", help="skip cells already in --out")
        p.add_argument(
            "--allow-changed",
            action="store_true",
            help="with --resume: run a changed card as a new card version, kept apart",
        )
        p.add_argument("--timeout", type=float, default=600.0, help="seconds per cell")
        p.add_argument("--memory-mb", type=float, default=8192.0, help="memory limit per cell")
        p.add_argument(
            "--jobs",
            type=int,
            default=None,
            help=f"cells run at once (default: the cores available, {available_cores()} here)",
        )
        p.add_argument(
            "--cold-start",
            action="store_true",
            help="start each cell's worker in a fresh interpreter (default: forked from a "
            "warm cell server)",
        )
        p.add_argument(
            "--executor",
            default="local",
            metavar="local|dask|tcp://HOST:PORT",
            help="where cells run: worker processes started here (local, the default); "
            "a Dask LocalCluster of --jobs workers started for the run (dask); or the "
            "Dask cluster whose scheduler is at tcp://HOST:PORT (or dask://HOST:PORT). "
            "Each cell still runs in its own process with the same limits. Dask needs "
            "pip install 'pets-sandbox[dask]'",
        )
        p.add_argument("--leakage", choices=["fast", "full", "off"], default="fast")
        p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
        p.add_argument(
            "--network",
            action="append",
            type=_network_profile,
            default=[],
            metavar="NAME=LATENCY_MS,MBIT_S",
            help="also model each record's time on this network (repeatable), "
            "besides loopback, lan and wan",
        )
        p.set_defaults(func=lambda a, demo=(name == "demo"): _run(a, demo=demo))

    p = sub.add_parser("env", help="virtual environments of backends with requirements")
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser(
        "sync", help="build or update backends' environments (default: every one that needs one)"
    )
    q.add_argument("names", nargs="*", metavar="BACKEND", help="registered backend names")
    q.set_defaults(func=_cmd_env)
    q = actions.add_parser("list", help="backends' environments and whether each is current")
    q.set_defaults(func=_cmd_env, names=[])

    p = sub.add_parser(
        "bench",
        help="run the performance suite: ratios measured in the same run, kept in a folder",
    )
    p.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    p.add_argument("--repeats", type=int, help="timed repeats of each side (default 5; quick 2)")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="take only this measurement (repeatable): " + ", ".join(_BENCH_NAMES),
    )
    p.add_argument("--out", help="bench folder (default results/bench-<timestamp>)")
    p.add_argument(
        "--size",
        type=int,
        help="patients of each cell run through the harness (default 20,000; quick 2,000)",
    )
    p.add_argument(
        "--scaling",
        metavar="RUN_FOLDER_OR_CARD",
        help="fit the log-log slope of cost against patients per backend, from a size "
        "sweep's run folder or by running a card's sizes",
    )
    p.add_argument(
        "--backend",
        action="append",
        default=[],
        help="with --scaling CARD: backend to run (repeatable; default plaintext and the "
        "installed secure aggregate backends)",
    )
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser(
        "report", help="rebuild a run folder's report (report.html, report.md) from its records"
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by pets run or demo")
    p.add_argument("--format", choices=sorted(_FORMATS), default="both")
    p.set_defaults(func=_cmd_report)
    return parser


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Show a plan's warnings as one line each; others as Python shows them."""
    from pets.options import ExecutorWarning, PlanWarning
    from pets.records import StoreWarning

    if issubclass(category, PlanWarning | StoreWarning | ExecutorWarning):
        print(f"pets: warning: {message}", file=sys.stderr)
    else:
        print(warnings.formatwarning(message, category, filename, lineno, line), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pets`` command.

    Returns the exit code: 0 on success, 1 if a cell failed, 2 for bad input (one line
    on standard error), 130 when interrupted (Ctrl-C or SIGTERM during cells; records
    already written are kept).
    """
    args = _parser().parse_args(argv)
    args.argv = None if argv is None else list(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return int(args.func(args))
        except KeyboardInterrupt:
            where = f" in {args.out}" if getattr(args, "out", None) else ""
            resume = " (pets run --resume continues)" if getattr(args, "out", None) else ""
            print(
                f"pets: interrupted; records already written are kept{where}{resume}",
                file=sys.stderr,
            )
            return 130


if __name__ == "__main__":
    sys.exit(main())
