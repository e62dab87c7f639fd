"""``python -m bench``: run the benchmark and write docs/benchmarks.md, docs/benchmarks-scaling.png and bench/results/.

Default: the full run (about 14 minutes), which replaces the recorded doc and
keeps its results in bench/results/. ``--quick`` (a ~4 minute run with short
windows and small N) and partial runs (``--stores``, ``--only``, ``--window``)
write their doc to .bench-out/<run>/ instead, unless ``--doc``.
``--smoke`` runs every case for a second or two at tiny sizes (1.5-2.5 minutes
on a shared 2-core machine), only to prove the harness still works end to end: its figures
mean nothing, and it writes them to a temporary directory (or ``--out``),
never to docs/ (tests/integration/test_bench_smoke.py runs it).
``--report RESULTS.json`` re-renders the doc from a results file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from bench import cases, replicas, report, soak
from bench.cases import ActiveSpec
from bench.procs import ROOT
from bench.stores import ADAPTERS, MotoSecretsManagerAdapter, MotoSsmAdapter, StoreAdapter
from tests.peers.servers import MotoServer, ensure_installed

GROUPS = (
    "scaling",
    "memory",
    "floor",
    "naive",
    "stores",
    "adoption",
    "replicas",
    "oidc",
    "fixes",
    "micro",
    "large",
    "soak",
)
STORES = ("file", "openbao", "moto-ssm", "moto-secretsmanager")


def _plan(mode: str) -> dict[str, Any]:
    """Every size and duration in one place, so the run time stays bounded (see docs/benchmarks.md)."""
    if mode == "smoke":
        # Every case and code path of the full run (profile, scrape phase, paced floor, every variant), at
        # sizes where each takes a second or two: the figures are meaningless, their presence is the point.
        return {
            "scaling": [(30, 3.0, 1.5, 1.0, 2.0)],
            "memory": [10],
            "startup_repeats": 2,
            "floor": {"file": 40, "openbao": 20, "moto-ssm": 4, "moto-secretsmanager": 6},
            "floor_repeats": 1,
            "floor_paced": (10, 20),
            "naive": (1, 1),
            "stores": {
                "openbao": (20, 3.0, 1.5),
                "moto-ssm": (4, 3.0, 1.5),
                "moto-secretsmanager": (6, 3.0, 1.5),
            },
            "adoption": 10,
            "replicas": (20, 6.0, 2.0),
            "oidc": (5, 3.0, 1.5),
            "fixes": (10, 3.0, 1.5),
            # (credentials, token lifetime s, window s): ~167 rotations/s, as the 100,000 x 20 min case
            "large": (200, 2.4, 2.0),
            # (credentials, token lifetime s, duration s, RSS sample interval s, scrape interval s)
            "soak": (30, 3.0, 6.0, 0.25, 1.0),
            "settle": 0.3,
            "scrape_interval": 1.0,
            "startup_lead": 0.5,
            "micro_timeout": 120,
        }
    if mode == "quick":
        return {
            "scaling": [(100, 3.0, 10.0, 0.0, 0.0), (1000, 30.0, 10.0, 4.0, 0.0)],
            "memory": [1, 1000],
            "startup_repeats": 1,
            "floor": {"file": 600, "openbao": 200, "moto-ssm": 30, "moto-secretsmanager": 100},
            "floor_repeats": 2,
            "floor_paced": None,
            "naive": (3, 2),
            "stores": {
                "openbao": (1000, 30.0, 10.0),
                "moto-ssm": (50, 30.0, 8.0),
                "moto-secretsmanager": (150, 30.0, 8.0),
            },
            "adoption": 1000,
            "replicas": (1000, 30.0, 30.0),
            "oidc": (20, 3.0, 8.0),
            "fixes": None,
            "large": (10000, 120.0, 15.0),
            "soak": (1000, 30.0, 120.0, 10.0, 15.0),
            "settle": 1.5,
            "scrape_interval": 15.0,
            "startup_lead": None,
            "micro_timeout": 600,
        }
    return {
        # (credentials, token lifetime s, window s, py-spy s, scrape phase s): all at ~67 rotations/s. The
        # scrape phase (after the 1,000 and 10,000 credential windows): /metrics scraped every
        # ``scrape_interval`` s, as Prometheus would.
        "scaling": [
            (100, 3.0, 45.0, 0.0, 0.0),
            (1000, 30.0, 60.0, 15.0, 30.0),
            (10000, 300.0, 45.0, 0.0, 30.0),
        ],
        "memory": [1, 100, 1000, 10000],
        # start-ups of the size the start-up target names (`adoption`), the median counted (`cases.run_startup`)
        "startup_repeats": 3,
        # rotations per floor run (after a warm-up pass over min(200, count // 2) keys)
        "floor": {"file": 2000, "openbao": 600, "moto-ssm": 80, "moto-secretsmanager": 300},
        "floor_repeats": 3,
        # (keys, rotations) of the file floor loop paced at the daemon's rate; None = not run
        "floor_paced": (200, 1000),
        "naive": (10, 3),
        # AWS' own write ceilings bound the moto cases: SSM PutParameter 10/s, Secrets Manager 40/s (syncd's default)
        "stores": {
            "openbao": (1000, 30.0, 40.0),
            "moto-ssm": (100, 30.0, 30.0),
            "moto-secretsmanager": (450, 30.0, 30.0),
        },
        "adoption": 10000,
        # (credentials, token lifetime s, window s): one replica, then 3 sharing the config (bench/replicas.py).
        # The window is one whole refresh interval (refresh_at x lifetime), so every credential is counted
        # about once whatever the phase of its refreshes (a start-up mint wave makes them bunch up).
        "replicas": (10000, 300.0, 150.0),
        "oidc": (20, 3.0, 20.0),
        # (credentials, token lifetime s, window s) of each "what would fix it" variant; None = not run
        "fixes": (1000, 30.0, 30.0),
        # 100,000 credentials with 20-minute tokens: ~167 rotations/s (target 4 of docs/benchmarks.md)
        "large": (100000, 1200.0, 60.0),
        # 30 minutes at ~67 rotations/s, RSS every 10 s, /metrics every 15 s (`--soak` sets the duration)
        "soak": (1000, 30.0, 1800.0, 10.0, 15.0),
        "settle": 3.0,
        "scrape_interval": 15.0,
        # seconds between syncd's expected start-up and the first seeded refresh; None = the generous estimate
        "startup_lead": None,
        "micro_timeout": 600,
    }


def _repeats(plan: dict[str, Any], n: int) -> int:
    """How many times a start-up of ``n`` credentials is timed: more than once for the target's size only."""
    return int(plan.get("startup_repeats", 1)) if n == plan["adoption"] else 1


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = [line[3:] for line in git("status", "--porcelain").splitlines() if line[3:].startswith("syncd/")]
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_start": os.getloadavg(),
        "commit": git("rev-parse", "--short", "HEAD"),
        "syncd_uncommitted": dirty,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    modes = ap.add_mutually_exclusive_group()
    modes.add_argument("--quick", action="store_true", help="~4 minute run (short windows, small N), to .bench-out/")
    modes.add_argument(
        "--smoke",
        action="store_true",
        help="every case for a second or two at tiny sizes, to prove the harness works; figures to a temp dir",
    )
    ap.add_argument("--stores", default=",".join(STORES), help=f"comma list of {', '.join(STORES)}")
    ap.add_argument("--only", help=f"comma list of case groups: {', '.join(GROUPS)} (default: all)")
    ap.add_argument("--doc", action="store_true", help="write docs/ even for a quick or partial run")
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/ (results JSON only)")
    ap.add_argument(
        "--report",
        type=Path,
        nargs="+",
        help="only re-render the doc from this results JSON, or from several partial runs merged (later groups win)",
    )
    ap.add_argument("--window", type=float, help="override every measurement window (seconds)")
    ap.add_argument(
        "--soak",
        metavar="DURATION",
        help="the soak (file store, ~67 rotations/s, scraped, RSS every 10 s) for DURATION (30m, 900s); "
        "alone unless --only names groups",
    )
    ap.add_argument(
        "--out",
        type=Path,
        help="work directory for logs and profiles (default: .bench-out/, or a new temporary directory for --smoke)",
    )
    args = ap.parse_args(argv)
    if args.smoke and args.doc:
        ap.error("--smoke never writes docs/: its figures are meaningless (drop --doc)")

    if args.report:
        parts = [json.loads(p.read_text()) for p in args.report]
        source = args.report[0]
        if len(parts) > 1:
            results = report.merge(parts)
            source = ROOT / "bench" / "results" / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-merged.json"
            source.write_text(json.dumps(results, indent=1, default=str))
        else:
            results = parts[0]
        report.write(results, ROOT / "docs", source)
        shown = source.relative_to(ROOT) if source.is_absolute() and source.is_relative_to(ROOT) else source
        print(f"wrote docs/benchmarks.md and docs/benchmarks-scaling.png from {shown}")
        return 0

    stores = [s for s in args.stores.split(",") if s]
    groups = [g for g in (args.only or ",".join(GROUPS)).split(",") if g]
    for name in stores:
        if name not in ADAPTERS:
            ap.error(f"unknown store {name!r}")
    for name in groups:
        if name not in GROUPS:
            ap.error(f"unknown group {name!r}")
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    plan = _plan(mode)
    if args.soak:
        if not args.only:
            stores, groups = ["file"], ["soak"]
        plan["soak"] = (plan["soak"][0], plan["soak"][1], soak.parse_duration(args.soak), *plan["soak"][3:])
    if args.window:
        w = args.window
        plan["scaling"] = [(n, life, w, min(prof, w), sc) for n, life, _, prof, sc in plan["scaling"]]
        plan["stores"] = {k: (n, life, w) for k, (n, life, _) in plan["stores"].items()}
        plan["oidc"] = (*plan["oidc"][:2], w)
        plan["fixes"] = (*(plan["fixes"] or (1000, 30.0))[:2], w)
        plan["large"] = (*plan["large"][:2], w)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="syncd-bench-smoke-")) if args.smoke else ROOT / ".bench-out"
    run_dir = out / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    # The emulator accepts any credentials; never let a real AWS profile near the benchmark.
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
    )
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)

    def log(msg: str) -> None:
        print(f"[{time.time() - started:6.0f}s] {msg}", flush=True)

    results: dict[str, Any] = {
        "meta": {
            **machine(),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "mode": mode,
            "command": "make bench"
            if mode == "full" and not (sys.argv[1:] if argv is None else argv)
            else "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
            "argv": sys.argv[1:] if argv is None else argv,
            "plan": plan,
            "run_dir": str(run_dir.relative_to(ROOT)) if run_dir.is_relative_to(ROOT) else str(run_dir),
        },
        "stores": {},
        "errors": [],
    }

    def attempt(what: str, fn: Callable[[], Any]) -> Any:
        log(what)
        try:
            return fn()
        except Exception as exc:
            log(f"  FAILED: {type(exc).__name__}: {exc}")
            results["errors"].append(
                {"case": what, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-3000:]}
            )
            return None

    ensure_installed()
    moto: MotoServer | None = None
    try:
        for name in stores:
            cls = ADAPTERS[name]
            if not cls.available():
                log(f"{name}: skipped, {cls.module} is not in this checkout yet")
                results["stores"][name] = {"skipped": f"{cls.module} not available"}
                continue
            wd = run_dir / name
            adapter: StoreAdapter
            if issubclass(cls, MotoSsmAdapter):
                if moto is None:
                    moto = MotoServer()
                    attempt("starting moto_server", moto.start)
                adapter = cls(wd, moto) if cls in (MotoSsmAdapter, MotoSecretsManagerAdapter) else cls(wd)
            else:
                adapter = cls(wd)
            entry: dict[str, Any] = {"title": adapter.title, "active": [], "startup": []}
            results["stores"][name] = entry
            if not attempt(f"{name}: starting its server", lambda adapter=adapter: adapter.start() or True):
                continue
            try:
                _run_store(name, adapter, wd, plan, groups, entry, attempt, log)
            finally:
                adapter.stop()
            _save(results, run_dir)
        if "oidc" in groups and "file" in stores:
            n, life, dur = plan["oidc"]
            adapter = ADAPTERS["file"](run_dir / "oidc")
            results["oidc"] = {}
            for idp in ("oidc", "fake"):
                spec = ActiveSpec(
                    label=f"{idp}-{n}",
                    store="file",
                    n=n,
                    lifetime=life,
                    duration=dur,
                    idp=idp,
                    startup_lead=plan["startup_lead"],
                )
                res = attempt(
                    f"file: {n} credentials, {life:g}s tokens, {'real oidc-provider' if idp == 'oidc' else 'fake IdP'}",
                    lambda spec=spec: cases.run_active(spec, adapter, run_dir / "oidc" / spec.label, log),
                )
                results["oidc"][idp] = res
        if "fixes" in groups and plan["fixes"] and "file" in stores:
            adapter = ADAPTERS["file"](run_dir / "fixes")
            results["fixes"] = {}
            fix_n, fix_life, fix_window = plan["fixes"]
            variants = {
                "baseline": ActiveSpec(
                    label="fix-baseline",
                    store="file",
                    n=fix_n,
                    lifetime=fix_life,
                    duration=fix_window,
                    patches=("probe",),
                    startup_lead=plan["startup_lead"],
                ),
                "log_level_warning": ActiveSpec(
                    label="fix-nologs",
                    store="file",
                    n=fix_n,
                    lifetime=fix_life,
                    duration=fix_window,
                    env=(("SYNCD_DAEMON__LOG_LEVEL", "warning"),),
                    patches=("probe",),
                    startup_lead=plan["startup_lead"],
                ),
                "prototype_fixes": ActiveSpec(
                    label="fix-patched",
                    store="file",
                    n=fix_n,
                    lifetime=fix_life,
                    duration=fix_window,
                    patches=("probe", "timers", "sniffio"),
                    startup_lead=plan["startup_lead"],
                ),
            }
            for key, spec in variants.items():
                results["fixes"][key] = attempt(
                    f"file: {fix_n} credentials at ~{spec.rate:.0f}/s, variant {key}",
                    lambda spec=spec: cases.run_active(spec, adapter, run_dir / "fixes" / spec.label, log),
                )
        if "micro" in groups:
            micro_out = run_dir / "micro.json"

            def micro() -> Any:
                cmd = [sys.executable, "-m", "bench.micro", "--out", str(micro_out)]
                cmd += ["--quick"] if mode == "quick" else ["--smoke"] if mode == "smoke" else []
                subprocess.run(
                    cmd,
                    cwd=ROOT,
                    check=True,
                    timeout=plan["micro_timeout"],
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                    preexec_fn=_cap_memory,
                )
                return json.loads(micro_out.read_text())

            results["micro"] = attempt("micro-measurements (in-process, per call)", micro)
    finally:
        if moto is not None:
            moto.cleanup()
    results["meta"]["elapsed_s"] = time.time() - started
    results["meta"]["load_avg_end"] = os.getloadavg()
    path = _save(results, run_dir)
    log(f"results: {path}")
    # Only a complete run (every store, every group, default windows) replaces the recorded doc.
    recorded = mode == "full" and not args.window and set(groups) == set(GROUPS) and set(stores) == set(STORES)
    if (recorded or args.doc) and not args.no_doc and mode != "smoke":
        keep = ROOT / "bench" / "results" / f"{stamp}.json"
        keep.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, keep)
        report.write(results, ROOT / "docs", keep)
        log(f"wrote docs/benchmarks.md, docs/benchmarks-scaling.png and {keep.relative_to(ROOT)}")
    else:
        report.write(results, run_dir, path)
        shown = run_dir.relative_to(ROOT) if run_dir.is_relative_to(ROOT) else run_dir
        log(f"wrote {shown}/benchmarks.md (a partial, quick or smoke run: docs/ untouched)")
    if results["errors"]:
        log(f"{len(results['errors'])} case(s) failed; see the doc's 'Failures' section")
    return 1 if results["errors"] else 0


# The micro-measurements run in-process loops over syncd's own code: if one stops terminating (as the
# redaction registry loop did), it must fail with MemoryError, not take the shared machine down with it.
MICRO_ADDRESS_SPACE = 4 * 2**30  # bytes; the quick run needs under 1.5 GiB


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MICRO_ADDRESS_SPACE, MICRO_ADDRESS_SPACE))


def _save(results: dict[str, Any], run_dir: Path) -> Path:
    path = run_dir / "results.json"
    # Paths inside the checkout (profiles, tracebacks) are kept relative: the file is committed.
    path.write_text(json.dumps(results, indent=1, default=str).replace(f"{ROOT}/", ""))
    return path


def _run_store(
    name: str,
    adapter: StoreAdapter,
    wd: Path,
    plan: dict[str, Any],
    groups: list[str],
    entry: dict[str, Any],
    attempt: Callable[[str, Callable[[], Any]], Any],
    log: Callable[[str], None],
) -> None:
    main_lifetime = 30.0
    if name == "file":
        if "scaling" in groups:
            for n, life, dur, prof, scrape in plan["scaling"]:
                spec = ActiveSpec(
                    label=f"scale-{n}",
                    store=name,
                    n=n,
                    lifetime=life,
                    duration=dur,
                    profile=prof,
                    scrape_phase=scrape,
                    scrape_interval=plan["scrape_interval"],
                    startup_lead=plan["startup_lead"],
                )
                res = attempt(
                    f"file: {n} credentials, {life:g}s tokens (~{spec.rate:.0f} rotations/s), {dur:g}s window",
                    lambda spec=spec: cases.run_active(spec, adapter, wd / spec.label, log),
                )
                if res is not None:
                    entry["active"].append(res)
        if "large" in groups:
            n, life, dur = plan["large"]
            spec = ActiveSpec(
                label=f"large-{n}",
                store=name,
                n=n,
                lifetime=life,
                duration=dur,
                scrape_interval=plan["scrape_interval"],
                startup_lead=plan["startup_lead"],
            )
            entry["large"] = attempt(
                f"file: {n} credentials, {life:g}s tokens (~{spec.rate:.0f} rotations/s), {dur:g}s window",
                lambda spec=spec: cases.run_active(spec, adapter, wd / spec.label, log),
            )
        if "soak" in groups:
            n, life, dur, every, scrape_every = plan["soak"]
            soak_spec = soak.SoakSpec(
                n=n,
                lifetime=life,
                duration=dur,
                sample_interval=every,
                scrape_interval=scrape_every,
                startup_lead=plan["startup_lead"],
            )
            entry["soak"] = attempt(
                f"file: soak, {n} credentials x {life:g}s tokens for {dur / 60:g} min",
                lambda: soak.run_soak(soak_spec, adapter, wd / "soak", log),
            )
        if "memory" in groups:
            for n in plan["memory"]:
                res = attempt(
                    f"file: start-up and idle memory with {n} credentials",
                    lambda n=n: cases.run_startup(
                        name, adapter, n, wd / f"idle-{n}", log, settle=plan["settle"], repeats=_repeats(plan, n)
                    ),
                )
                if res is not None:
                    entry["startup"].append(res)
    elif "stores" in groups:
        n, life, dur = plan["stores"][name]
        main_lifetime = life
        spec = ActiveSpec(
            label=f"active-{n}",
            store=name,
            n=n,
            lifetime=life,
            duration=dur,
            profile=10.0 if name == "openbao" and dur >= 30 else 0.0,
            startup_lead=plan["startup_lead"],
        )
        res = attempt(
            f"{name}: {n} credentials, {life:g}s tokens (~{spec.rate:.0f} rotations/s), {dur:g}s window",
            lambda: cases.run_active(spec, adapter, wd / spec.label, log),
        )
        if res is not None:
            entry["active"].append(res)
    if "floor" in groups:
        count = plan["floor"][name]
        entry["floor"] = attempt(
            f"{name}: floor loop, {count} rotations x {plan['floor_repeats']}",
            lambda: cases.run_floor(
                adapter,
                wd / "floor",
                log,
                lifetime=main_lifetime,
                keys=min(200, count // 2),
                count=count,
                repeats=plan["floor_repeats"],
            ),
        )
        if name == "file" and plan["floor_paced"]:
            paced_keys, paced_count = plan["floor_paced"]
            entry["floor_paced"] = attempt(
                "file: floor loop paced at 67/s (same rate as the daemon)",
                lambda: cases.run_floor(
                    adapter,
                    wd / "floor-paced",
                    log,
                    lifetime=main_lifetime,
                    keys=paced_keys,
                    count=paced_count,
                    repeats=1,
                    rate=1000 / (0.5 * main_lifetime),
                ),
            )
        entry["bare_floor"] = attempt(
            f"{name}: bare aiohttp floor, {count} rotations x {plan['floor_repeats']}",
            lambda: cases.run_bare_floor(
                adapter,
                wd / "bare-floor",
                log,
                lifetime=main_lifetime,
                keys=min(200, count // 2),
                count=count,
                repeats=plan["floor_repeats"],
            ),
        )
    if "naive" in groups:
        runs, repeats = plan["naive"]
        entry["naive"] = attempt(
            f"{name}: naive cron-style script, {runs} processes x {repeats}",
            lambda: cases.run_naive(adapter, wd / "naive", log, lifetime=main_lifetime, runs=runs, repeats=repeats),
        )
    if "adoption" in groups and name == "openbao":
        n = plan["adoption"]
        res = attempt(
            f"openbao: start-up with {n} fresh stored tokens (adoption)",
            lambda: cases.run_startup(
                name, adapter, n, wd / f"adopt-{n}", log, settle=plan["settle"], repeats=_repeats(plan, n)
            ),
        )
        if res is not None:
            entry["startup"].append(res)
    if "replicas" in groups and name == "openbao":
        n, life, dur = plan["replicas"]
        entry["replicas"] = attempt(
            f"openbao: {n} credentials, {life:g}s tokens, one replica then 3 (several replicas)",
            lambda: replicas.run_replicas(
                adapter, wd / "replicas", log, n=n, lifetime=life, duration=dur, settle=plan["settle"]
            ),
        )


if __name__ == "__main__":
    sys.exit(main())
