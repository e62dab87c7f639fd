"""``python -m bench``: run the benchmark and write docs/benchmarks.md, docs/benchmarks-scaling.png and bench/results/.

Default: the full run (about 14 minutes), which replaces the recorded doc and
keeps its results in bench/results/. ``--quick`` (a ~3-4 minute smoke run with
short windows and small N) and partial runs (``--stores``, ``--only``,
``--window``) write their doc to .bench-out/<run>/ instead, unless ``--doc``.
``--report RESULTS.json`` re-renders the doc from a results file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from bench import cases, report
from bench.cases import ActiveSpec
from bench.procs import ROOT
from bench.stores import ADAPTERS, MotoSecretsManagerAdapter, MotoSsmAdapter, StoreAdapter
from tests.peers.servers import MotoServer, ensure_installed

GROUPS = ("scaling", "memory", "floor", "naive", "stores", "adoption", "oidc", "fixes", "micro")
STORES = ("file", "openbao", "moto-ssm", "moto-secretsmanager")


def _plan(quick: bool) -> dict[str, Any]:
    """Every size and duration in one place, so the run time stays bounded (see docs/benchmarks.md)."""
    if quick:
        return {
            "scaling": [(100, 3.0, 10.0, 0.0), (1000, 30.0, 10.0, 4.0)],
            "memory": [1, 1000],
            "floor": {"file": 600, "openbao": 200, "moto-ssm": 30, "moto-secretsmanager": 100},
            "floor_repeats": 2,
            "floor_paced": False,
            "naive": (3, 2),
            "stores": {
                "openbao": (1000, 30.0, 10.0),
                "moto-ssm": (50, 30.0, 8.0),
                "moto-secretsmanager": (150, 30.0, 8.0),
            },
            "adoption": 1000,
            "oidc": (20, 3.0, 8.0),
            "fixes": 0.0,
            "settle": 1.5,
            "scrape_phase": 0.0,
        }
    return {
        # (credentials, token lifetime s, window s, py-spy s): all at ~67 rotations/s
        "scaling": [(100, 3.0, 45.0, 0.0), (1000, 30.0, 60.0, 15.0), (10000, 300.0, 45.0, 0.0)],
        "memory": [1, 100, 1000, 10000],
        # rotations per floor run (after a warm-up pass over min(200, count // 2) keys)
        "floor": {"file": 2000, "openbao": 600, "moto-ssm": 80, "moto-secretsmanager": 300},
        "floor_repeats": 3,
        "floor_paced": True,
        "naive": (10, 3),
        # AWS' own write ceilings bound the moto cases: SSM PutParameter 10/s, Secrets Manager 40/s (syncd's default)
        "stores": {
            "openbao": (1000, 30.0, 40.0),
            "moto-ssm": (100, 30.0, 30.0),
            "moto-secretsmanager": (450, 30.0, 30.0),
        },
        "adoption": 10000,
        "oidc": (20, 3.0, 20.0),
        "fixes": 30.0,
        "settle": 3.0,
        # after the 1,000 and 10,000 credential windows: /metrics scraped every 15 s, as Prometheus would
        "scrape_phase": 30.0,
    }


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
    ap.add_argument("--quick", action="store_true", help="~3-4 minute smoke run (short windows, small N)")
    ap.add_argument("--stores", default=",".join(STORES), help=f"comma list of {', '.join(STORES)}")
    ap.add_argument("--only", default=",".join(GROUPS), help=f"comma list of case groups: {', '.join(GROUPS)}")
    ap.add_argument("--doc", action="store_true", help="write docs/ even for a quick or partial run")
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/ (results JSON only)")
    ap.add_argument("--report", type=Path, help="only re-render the doc from this results JSON")
    ap.add_argument("--window", type=float, help="override every measurement window (seconds)")
    ap.add_argument("--out", type=Path, default=ROOT / ".bench-out", help="work directory for logs and profiles")
    args = ap.parse_args(argv)

    if args.report:
        results = json.loads(args.report.read_text())
        report.write(results, ROOT / "docs", args.report)
        print(f"wrote docs/benchmarks.md and docs/benchmarks-scaling.png from {args.report}")
        return 0

    stores = [s for s in args.stores.split(",") if s]
    groups = [g for g in args.only.split(",") if g]
    for name in stores:
        if name not in ADAPTERS:
            ap.error(f"unknown store {name!r}")
    for name in groups:
        if name not in GROUPS:
            ap.error(f"unknown group {name!r}")
    plan = _plan(args.quick)
    if args.window:
        w = args.window
        plan["scaling"] = [(n, life, w, min(prof, w)) for n, life, _, prof in plan["scaling"]]
        plan["stores"] = {k: (n, life, w) for k, (n, life, _) in plan["stores"].items()}
        plan["oidc"] = (*plan["oidc"][:2], w)
        plan["fixes"] = w
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = args.out / stamp
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
            "mode": "quick" if args.quick else "full",
            "command": "make bench" if not args.quick else "python -m bench --quick",
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
                spec = ActiveSpec(label=f"{idp}-{n}", store="file", n=n, lifetime=life, duration=dur, idp=idp)
                res = attempt(
                    f"file: {n} credentials, {life:g}s tokens, {'real oidc-provider' if idp == 'oidc' else 'fake IdP'}",
                    lambda spec=spec: cases.run_active(spec, adapter, run_dir / "oidc" / spec.label, log),
                )
                results["oidc"][idp] = res
        if "fixes" in groups and plan["fixes"] and "file" in stores:
            adapter = ADAPTERS["file"](run_dir / "fixes")
            results["fixes"] = {}
            variants = {
                "baseline": ActiveSpec(
                    label="fix-baseline",
                    store="file",
                    n=1000,
                    lifetime=30.0,
                    duration=plan["fixes"],
                    patches=("probe",),
                ),
                "log_level_warning": ActiveSpec(
                    label="fix-nologs",
                    store="file",
                    n=1000,
                    lifetime=30.0,
                    duration=plan["fixes"],
                    env=(("SYNCD_DAEMON__LOG_LEVEL", "warning"),),
                    patches=("probe",),
                ),
                "prototype_fixes": ActiveSpec(
                    label="fix-patched",
                    store="file",
                    n=1000,
                    lifetime=30.0,
                    duration=plan["fixes"],
                    patches=("probe", "timers", "sniffio"),
                ),
            }
            for key, spec in variants.items():
                results["fixes"][key] = attempt(
                    f"file: 1000 credentials at ~67/s, variant {key}",
                    lambda spec=spec: cases.run_active(spec, adapter, run_dir / "fixes" / spec.label, log),
                )
        if "micro" in groups:
            out = run_dir / "micro.json"

            def micro() -> Any:
                cmd = [sys.executable, "-m", "bench.micro", "--out", str(out)] + (["--quick"] if args.quick else [])
                subprocess.run(cmd, cwd=ROOT, check=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
                return json.loads(out.read_text())

            results["micro"] = attempt("micro-measurements (in-process, per call)", micro)
    finally:
        if moto is not None:
            moto.cleanup()
    results["meta"]["elapsed_s"] = time.time() - started
    results["meta"]["load_avg_end"] = os.getloadavg()
    path = _save(results, run_dir)
    log(f"results: {path}")
    # Only a complete run (every store, every group, default windows) replaces the recorded doc.
    recorded = not args.quick and not args.window and set(groups) == set(GROUPS) and set(stores) == set(STORES)
    if (recorded or args.doc) and not args.no_doc:
        keep = ROOT / "bench" / "results" / f"{stamp}.json"
        keep.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, keep)
        report.write(results, ROOT / "docs", keep)
        log(f"wrote docs/benchmarks.md, docs/benchmarks-scaling.png and {keep.relative_to(ROOT)}")
    else:
        report.write(results, run_dir, path)
        log(f"wrote {run_dir.relative_to(ROOT)}/benchmarks.md (a partial or quick run: docs/ untouched; --doc forces)")
    if results["errors"]:
        log(f"{len(results['errors'])} case(s) failed; see the doc's 'Failures' section")
    return 1 if results["errors"] else 0


def _save(results: dict[str, Any], run_dir: Path) -> Path:
    path = run_dir / "results.json"
    path.write_text(json.dumps(results, indent=1, default=str))
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
            for n, life, dur, prof in plan["scaling"]:
                spec = ActiveSpec(
                    label=f"scale-{n}",
                    store=name,
                    n=n,
                    lifetime=life,
                    duration=dur,
                    profile=prof,
                    scrape_phase=plan["scrape_phase"] if n >= 1000 else 0.0,
                )
                res = attempt(
                    f"file: {n} credentials, {life:g}s tokens (~{spec.rate:.0f} rotations/s), {dur:g}s window",
                    lambda spec=spec: cases.run_active(spec, adapter, wd / spec.label, log),
                )
                if res is not None:
                    entry["active"].append(res)
        if "memory" in groups:
            for n in plan["memory"]:
                res = attempt(
                    f"file: start-up and idle memory with {n} credentials",
                    lambda n=n: cases.run_startup(name, adapter, n, wd / f"idle-{n}", log, settle=plan["settle"]),
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
            entry["floor_paced"] = attempt(
                "file: floor loop paced at 67/s (same rate as the daemon)",
                lambda: cases.run_floor(
                    adapter,
                    wd / "floor-paced",
                    log,
                    lifetime=main_lifetime,
                    keys=200,
                    count=1000,
                    repeats=1,
                    rate=1000 / (0.5 * main_lifetime),
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
            lambda: cases.run_startup(name, adapter, n, wd / f"adopt-{n}", log, settle=plan["settle"]),
        )
        if res is not None:
            entry["startup"].append(res)


if __name__ == "__main__":
    sys.exit(main())
