"""docs/benchmarks.md and docs/benchmarks-scaling.png from one results JSON.

Everything in the doc is computed from the results file it names, including
which findings are shown: a finding's paragraph appears only when the data
shows the problem (a fixed leak drops out of the doc on the next run).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.large import large_section, large_targets, round2_section, soak_section
from bench.procs import ROOT

PLOT = "benchmarks-scaling.png"
DASH = "\u2013"  # an en dash: "not measured" in tables


# --------------------------------------------------------------------------- formatting


def f(value: Any, digits: int = 2, unit: str = "") -> str:
    if value is None:
        return "\u2013"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    return f"{value}{unit}"


def ms(seconds: float | None, digits: int = 1) -> str:
    return "\u2013" if seconds is None else f"{seconds * 1000:,.{digits}f} ms"


def table(head: list[str], rows: Iterable[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _get(d: Any, *path: Any) -> Any:
    for p in path:
        if d is None:
            return None
        if isinstance(d, dict):
            d = d.get(p)
        elif isinstance(d, list) and isinstance(p, int) and -len(d) <= p < len(d):
            d = d[p]
        else:
            return None
    return d


def _active(results: dict[str, Any], store: str, n: int | None = None) -> dict[str, Any] | None:
    for case in _get(results, "stores", store, "active") or []:
        if n is None or _get(case, "spec", "n") == n:
            return case  # type: ignore[no-any-return]
    return None


def main_case(results: dict[str, Any]) -> dict[str, Any] | None:
    return _active(results, "file", 1000)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _spread(values: list[float]) -> str:
    if not values:
        return ""
    return f" ({min(values):.2f}\u2013{max(values):.2f})"


# --------------------------------------------------------------------------- targets


def _idle(results: dict[str, Any], store: str, n: int) -> dict[str, Any] | None:
    for case in _get(results, "stores", store, "startup") or []:
        if case.get("n") == n:
            return case  # type: ignore[no-any-return]
    return None


def per_credential_kb(results: dict[str, Any]) -> dict[int, float]:
    """Marginal idle RSS per credential against a one-credential daemon."""
    base = _idle(results, "file", 1)
    out: dict[int, float] = {}
    if base is None:
        return out
    for case in _get(results, "stores", "file", "startup") or []:
        n = case["n"]
        if n > 1:
            out[n] = (case["rss_mb"] - base["rss_mb"]) * 1024 / (n - 1)
    return out


CPU_TARGET = 0.12  # cores at ~67 rotations/s (issue: performance round 2, target 1)
BARE_TARGET = 1.3  # syncd CPU per rotation against the bare aiohttp floor, every store


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: what it asks, what was measured, met or missed and by how much."""
    rows: list[dict[str, Any]] = []
    main = main_case(results)
    big = _active(results, "file", 10000)

    def add(
        name: str,
        measured: float | None,
        limit: float,
        *,
        higher_is_better: bool = False,
        fmt: str = "{:.3g}",
        note: str = "",
    ) -> None:
        if measured is None:
            rows.append({"target": name, "measured": "not measured", "met": None, "margin": "", "note": note})
            return
        met = measured >= limit if higher_is_better else measured <= limit
        if limit == 0:
            margin = "" if met else f"{fmt.format(measured)} instead of none"
        elif higher_is_better:
            margin = f"{measured / limit:.2f}x the minimum" if limit else ""
        else:
            margin = (
                f"{100 * (limit - measured) / limit:.0f}% headroom"
                if met
                else f"over by {100 * (measured - limit) / limit:.0f}%"
            )
        rows.append({"target": name, "measured": fmt.format(measured), "met": met, "margin": margin, "note": note})

    for label, case in (("1,000 x 30 s", main), ("10,000 x 5 min", big)):
        if case is None:
            continue
        add(f"avg CPU <= {CPU_TARGET} core ({label}, ~67 rot/s)", case.get("cpu_cores"), CPU_TARGET, fmt="{:.3f} core")
        peak, steady = case.get("peak_rss_mb"), case.get("rss_end_mb")
        add(
            f"peak RSS <= 300 MB ({label})",
            peak,
            300,
            fmt="{:.0f} MB",
            note=f"steady {steady:.0f} MB; the peak is a /metrics render"
            if peak and steady and peak - steady > 30
            else "",
        )
        overlap = _get(case, "scrape", "reading_scrape_overlapped_rotations")
        add(
            f"lateness p99 <= 250 ms ({label}, no scraping)",
            _get(case, "lateness_hist", "p99"),
            0.25,
            fmt="{:.3f} s",
            note="histogram, whole run"
            + (
                f"; includes {overlap} rotations that ran while the reading scrape rendered"
                if (_get(case, "scrape", "loop_stall_ms") or 0) > 100
                else ""
            ),
        )
        if _get(case, "scraped", "lateness_hist"):
            sc = case["scraped"]
            add(
                f"lateness p99 <= 250 ms ({label}, /metrics scraped every {sc['interval_s']:g} s)",
                sc["lateness_hist"]["p99"],
                0.25,
                fmt="{:.3f} s",
                note=f"{sc['duration_s']:.0f} s, longest loop stall {sc.get('livez_max_ms') or 0:,.0f} ms",
            )
    idle10k = _idle(results, "file", 10000)
    if idle10k:
        add("RSS <= 300 MB (10,000 idle credentials)", idle10k.get("rss_mb"), 300, fmt="{:.0f} MB")
    reg = _get(results, "micro", "registry")
    if reg and "tokens_still_registered" in reg:
        add(
            f"memory bounded: tokens the log redactor keeps after {reg['refreshes']} refreshes of one credential",
            float(reg["tokens_still_registered"]),
            5,
            fmt="{:.0f}",
            note="deterministic check (bench/micro.py); unbounded = a leak of ~1 KB per rotation",
        )
    actives = [c for s in (results.get("stores") or {}).values() if isinstance(s, dict) for c in s.get("active", [])]
    actives += [c for c in (results.get("oidc") or {}).values() if c]
    readers = [c["reader"] for c in actives if isinstance(c.get("reader"), dict) and "reads" in c["reader"]]
    if readers:
        add(
            "zero expired reads (all loaded cases)",
            float(sum(r["expired"] for r in readers)),
            0,
            fmt="{:.0f}",
            note=f"{sum(r['reads'] for r in readers):,} reads",
        )
        fractions = [r["min_fraction"] for r in readers if r.get("min_fraction") is not None]
        add(
            "min remaining lifetime fraction >= 0.4 (all loaded cases)",
            min(fractions) if fractions else None,
            0.4,
            higher_is_better=True,
            fmt="{:.3f}",
        )
    floor = _get(results, "stores", "file", "floor", "cpu_per_rotation_ms")
    if main:
        add(
            "syncd CPU/rotation <= 1.5 x floor (file)",
            _ratio(main.get("cpu_per_rotation_ms"), floor),
            1.5,
            fmt="{:.2f}x",
        )
    for store in ("file", "openbao", "moto-ssm", "moto-secretsmanager"):
        case = main if store == "file" else _active(results, store)
        bare = _get(results, "stores", store, "bare_floor", "cpu_per_rotation_ms")
        if case and bare:
            add(
                f"syncd CPU/rotation <= {BARE_TARGET} x bare aiohttp floor ({store})",
                _ratio(case.get("cpu_per_rotation_ms"), bare),
                BARE_TARGET,
                fmt="{:.2f}x",
                note=f"{case['cpu_per_rotation_ms']:.2f} ms against {bare:.2f} ms",
            )
    naive = _get(results, "stores", "file", "naive", "cpu_per_rotation_ms")
    if main:
        add(
            "naive >= 20 x syncd CPU/rotation (file)",
            _ratio(naive, main.get("cpu_per_rotation_ms")),
            20,
            higher_is_better=True,
            fmt="{:.0f}x",
        )
    for store in ("openbao", "moto-ssm", "moto-secretsmanager"):
        case = _active(results, store)
        fl = _get(results, "stores", store, "floor", "cpu_per_rotation_ms")
        nv = _get(results, "stores", store, "naive", "cpu_per_rotation_ms")
        if case:
            add(
                f"syncd CPU/rotation <= 1.5 x floor ({store})",
                _ratio(case.get("cpu_per_rotation_ms"), fl),
                1.5,
                fmt="{:.2f}x",
            )
            add(
                f"naive >= 20 x syncd ({store})",
                _ratio(nv, case.get("cpu_per_rotation_ms")),
                20,
                higher_is_better=True,
                fmt="{:.0f}x",
            )
    from bench.targets_scrape import add_targets  # targets 2 and 3 of issue 16 (its own module)

    add_targets(results, add)
    scal = [c for c in _get(results, "stores", "file", "active") or [] if c.get("cpu_per_rotation_ms")]
    if len(scal) >= 2:
        per = [c["cpu_per_rotation_ms"] for c in scal]
        ns = [c["spec"]["n"] for c in scal]
        add(
            f"CPU/rotation flat within 20% ({min(ns):,} -> {max(ns):,} credentials)",
            max(per) / min(per) - 1,
            0.2,
            fmt="{:.0%} spread",
        )
    rows += large_targets(results)
    kb = per_credential_kb(results)
    if len(kb) >= 2:
        vals = [kb[n] for n in sorted(kb)]
        add(
            f"memory per credential flat within 20% ({', '.join(f'{n:,}' for n in sorted(kb))})",
            max(vals) / min(vals) - 1,
            0.2,
            fmt="{:.0%} spread",
        )
    return rows


# --------------------------------------------------------------------------- plot


def plot(results: dict[str, Any], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scal = sorted(
        (c for c in _get(results, "stores", "file", "active") or [] if c.get("cpu_per_rotation_ms")),
        key=lambda c: c["spec"]["n"],
    )
    idle = sorted(_get(results, "stores", "file", "startup") or [], key=lambda c: c["n"])
    if not scal and not idle:
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    if scal:
        ns = [c["spec"]["n"] for c in scal]
        cpu = [c["cpu_per_rotation_ms"] for c in scal]
        lo = [
            c["cpu_per_rotation_ms"] - min(c.get("cpu_per_rotation_ms_slices") or [c["cpu_per_rotation_ms"]])
            for c in scal
        ]
        hi = [
            max(c.get("cpu_per_rotation_ms_slices") or [c["cpu_per_rotation_ms"]]) - c["cpu_per_rotation_ms"]
            for c in scal
        ]
        ax1.errorbar(ns, cpu, yerr=[lo, hi], marker="o", capsize=4, label="syncd (range over 6 slices)")
        floor = _get(results, "stores", "file", "floor", "cpu_per_rotation_ms")
        if floor:
            ax1.axhline(floor, color="grey", ls="--", label=f"floor (bare loop) {floor:.2f} ms")
            ax1.axhline(1.5 * floor, color="tab:red", ls=":", label="target: 1.5 x floor")
        paced = _get(results, "stores", "file", "floor_paced", "cpu_per_rotation_ms")
        if paced:
            ax1.axhline(paced, color="tab:green", ls="-.", label=f"floor paced at 67/s {paced:.2f} ms")
        ax1.set_xscale("log")
        ax1.set_xlabel("credentials (tokens sized for ~67 rotations/s)")
        ax1.set_ylabel("syncd CPU per rotation (ms)")
        ax1.set_ylim(bottom=0)
        ax1.set_title("CPU per rotation, file store")
        ax1.legend(fontsize=8)
        ax1.grid(alpha=0.3)
    if idle or scal:
        if idle:
            ax2.plot(
                [c["n"] for c in idle], [c["rss_mb"] for c in idle], marker="o", label="idle RSS (fresh tokens adopted)"
            )
            kb = per_credential_kb(results)
            for c in idle:
                if c["n"] in kb:
                    ax2.annotate(
                        f"{kb[c['n']]:.1f} KB/credential",
                        (c["n"], c["rss_mb"]),
                        textcoords="offset points",
                        xytext=(-6, 8),
                        fontsize=7,
                        ha="right",
                    )
        if scal:
            ax2.plot(
                [c["spec"]["n"] for c in scal],
                [c["peak_rss_mb"] for c in scal],
                marker="s",
                label="peak RSS under load (~67/s)",
            )
        ax2.axhline(300, color="tab:red", ls=":", label="target: 300 MB")
        ax2.set_xscale("log")
        ax2.set_xlabel("credentials")
        ax2.set_ylabel("RSS (MB)")
        ax2.set_ylim(bottom=0)
        ax2.set_title("Memory, file store")
        ax2.legend(fontsize=8)
        ax2.grid(alpha=0.3)
    meta = results.get("meta", {})
    fig.suptitle(f"syncd {meta.get('commit', '')} on {meta.get('cpus')} cores, {meta.get('date', '')[:10]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------- sections


def _case_rows(
    cases: list[dict[str, Any]], floor: float | None, naive: float | None
) -> tuple[list[list[str]], list[list[str]]]:
    cost, timing = [], []
    for c in cases:
        spec = c["spec"]
        label = f"{spec['n']:,} x {spec['lifetime']:g} s"
        cpr = c.get("cpu_per_rotation_ms")
        cost.append(
            [
                label,
                f"{c.get('rotations_per_s', 0):.1f}",
                f(c.get("cpu_cores"), 3),
                f"{f(cpr, 2)}{_spread(c.get('cpu_per_rotation_ms_slices') or [])}",
                f(c.get("cpu_system_share", None) and 100 * c["cpu_system_share"], 0, "%"),
                f(_ratio(cpr, floor), 2, "x"),
                f(_ratio(naive, cpr), 0, "x"),
                f(c.get("peak_rss_mb"), 0),
                f(c.get("rss_growth_mb_per_h"), 0),
                f"{ms(_get(c, 'scrape', 'wall_ms') and _get(c, 'scrape', 'wall_ms') / 1000, 0)} / "
                f"{ms(_get(c, 'scrape', 'loop_stall_ms') and _get(c, 'scrape', 'loop_stall_ms') / 1000, 0)} / "
                f"{f(_get(c, 'scrape', 'kb'), 0)} KB",
            ]
        )
        h, lg, r = c.get("lateness_hist") or {}, c.get("lateness_log") or {}, c.get("reader") or {}
        st = c.get("startup") or {}
        timing.append(
            [
                label,
                f"{ms(h.get('p50'))} / {ms(h.get('p99'))} / ≤{ms(h.get('max_le'), 0)}"
                + (
                    f" (incl. {_get(c, 'scrape', 'reading_scrape_overlapped_rotations')} rotations during the reading "
                    "scrape)"
                    if (_get(c, "scrape", "loop_stall_ms") or 0) > 100
                    else ""
                ),
                (
                    f"{ms(_get(c, 'scraped', 'lateness_hist', 'p99'))} / "
                    f"≤{ms(_get(c, 'scraped', 'lateness_hist', 'max_le'), 0)}"
                    if _get(c, "scraped", "lateness_hist")
                    else DASH
                ),
                f"{ms(lg.get('p50'))} / {ms(lg.get('p99'))} / {ms(lg.get('max'))}" if lg else "\u2013",
                f"{ms(_get(r, 'visible_lag', 'p50'), 0)} / {ms(_get(r, 'visible_lag', 'p99'), 0)}",
                f"{r.get('expired', DASH)} of {r.get('reads', 0):,}",
                f(r.get("min_fraction"), 3),
                f"{f(st.get('seconds'), 1)} s, {st.get('adopted', DASH)}/{spec['n']} adopted, "
                f"{st.get('to_mint', DASH)} to mint",
                f"{c.get('failures', {}).get('mints', 0)} / {c.get('failures', {}).get('writes', 0)}",
            ]
        )
    return cost, timing


COST_HEAD = [
    "credentials x lifetime",
    "rotations/s",
    "syncd CPU (cores)",
    "CPU ms/rotation (6 slices)",
    "kernel share",
    "syncd / floor",
    "naive / syncd",
    "peak RSS MB",
    "RSS drift MB/h (2nd half)",
    "one /metrics scrape: wall / longest loop stall / size",
]
TIME_HEAD = [
    "credentials x lifetime",
    "lateness p50 / p99 / max, no scraping (histogram)",
    "lateness p99 / max with 15 s scrapes",
    "lateness p50 / p99 / max (log)",
    "consumer-visible lag p50 / p99",
    "expired reads",
    "min remaining fraction",
    "start-up",
    "failed mints / writes",
]


def store_section(results: dict[str, Any], store: str, title: str, intro: str) -> str:
    entry = _get(results, "stores", store)
    if not entry:
        return ""
    if entry.get("skipped"):
        return f"## {title}\n\nSkipped: {entry['skipped']}.\n"
    floor = _get(entry, "floor", "cpu_per_rotation_ms")
    naive = _get(entry, "naive", "cpu_per_rotation_ms")
    parts = [f"## {title}\n", intro]
    cases = entry.get("active") or []
    if cases:
        cost, timing = _case_rows(cases, floor, naive)
        parts += [
            "**Throughput and cost** (syncd process only, measured from outside with psutil)\n",
            table(COST_HEAD, cost),
            "",
            "**Timeliness and freshness**\n",
            table(TIME_HEAD, timing),
            "",
        ]
    side = []
    if floor is not None:
        runs = _get(entry, "floor", "runs") or []
        side.append(
            [
                "floor: bare mint + write loop, back to back",
                f"{floor:.2f}",
                f"median of {len(runs)}: " + ", ".join(f"{r['cpu_per_rotation_ms']:.2f}" for r in runs),
                f"{_get(entry, 'floor', 'rotations_per_s') or 0:.0f} rotations/s",
            ]
        )
    bare = _get(entry, "bare_floor", "cpu_per_rotation_ms")
    if bare is not None:
        runs = _get(entry, "bare_floor", "runs") or []
        side.append(
            [
                "bare aiohttp floor: aiohttp POST + bare store write, no syncd code",
                f"{bare:.2f}",
                f"median of {len(runs)}: " + ", ".join(f"{r['cpu_per_rotation_ms']:.2f}" for r in runs),
                f"{_get(entry, 'bare_floor', 'rotations_per_s') or 0:.0f} rotations/s",
            ]
        )
    paced = _get(entry, "floor_paced", "cpu_per_rotation_ms")
    if paced is not None:
        side.append(
            ["floor paced at the daemon's rate (67/s)", f"{paced:.2f}", "1 run", "same calls, one timer per rotation"]
        )
    if naive is not None:
        b = _get(entry, "naive", "batches") or []
        side.append(
            [
                "naive: one fresh Python process per rotation",
                f"{naive:.0f}",
                f"median of {len(b)} batches of {b[0]['runs'] if b else '?'}",
                f"{_get(entry, 'naive', 'wall_per_rotation_ms') or 0:.0f} ms wall per rotation",
            ]
        )
    if side:
        parts += [
            "**Same run, side by side** (CPU ms per rotation)\n",
            table(["loop", "CPU ms/rotation", "repeats", "note"], side),
            "",
        ]
    startups = entry.get("startup") or []
    if startups and store != "file":
        rows = []
        for s in startups:
            st = s["startup"]
            rows.append(
                [
                    f"{s['n']:,}",
                    f(st.get("seconds"), 1),
                    f(st.get("config_and_setup_s"), 1),
                    f(st.get("adoption_s"), 1),
                    f"{st.get('adopted')}/{s['n']}",
                    f"{s.get('idp_requests_after_settle')}",
                    str(st.get("readyz_status")),
                    f(s.get("rss_mb"), 0),
                    f(s.get("seed_seconds"), 1),
                ]
            )
        parts += [
            "**Start-up adoption** (targets already hold fresh tokens)\n",
            table(
                [
                    "credentials",
                    "spawn -> `started` (s)",
                    "config + setup (s)",
                    "adoption reads (s)",
                    "adopted",
                    "IdP requests",
                    "/readyz",
                    "RSS MB",
                    "seeding took (s)",
                ],
                rows,
            ),
            "",
        ]
    return "\n".join(parts) + "\n"


def scaling_section(results: dict[str, Any]) -> str:
    idle = sorted(_get(results, "stores", "file", "startup") or [], key=lambda c: c["n"])
    kb = per_credential_kb(results)
    parts = [
        "## Scaling (file store)\n",
        "Every loaded size runs at the same ~67 rotations/s (token lifetime scaled with the number of "
        "credentials: 100 x 3 s, 1,000 x 30 s, 10,000 x 5 min), so CPU per rotation compares like with like "
        "and only the number of credentials changes. Memory is measured on idle daemons whose targets already "
        "hold fresh 1-hour tokens (all adopted, nothing to do), against a one-credential daemon.\n",
        f"![CPU per rotation and RSS against the number of credentials]({PLOT})\n",
    ]
    if idle:
        rows = []
        for c in idle:
            st = c["startup"]
            rows.append(
                [
                    f"{c['n']:,}",
                    f(c["rss_mb"], 0),
                    f(c["peak_rss_mb"], 0),
                    f(kb.get(c["n"]), 1) if c["n"] > 1 else "(baseline)",
                    f(st.get("seconds"), 1),
                    f(st.get("config_and_setup_s"), 1),
                    f(st.get("adoption_s"), 1),
                    f"{st.get('adopted')}/{c['n']}",
                    str(c.get("idp_requests_after_settle")),
                    f(1000 * c["idle_cpu_cores"], 1, " ms/s"),
                ]
            )
        mem = _get(results, "micro", "memory_kib_per_credential") or {}
        if mem:
            parts.append(
                "Python heap per credential by component (tracemalloc in `bench/micro.py`; the RSS figure above "
                f"also carries allocator overhead): {', '.join(f'{k} {v:.1f} KiB' for k, v in mem.items())}; "
                f"total {sum(mem.values()):.1f} KiB.\n"
            )
        parts += [
            table(
                [
                    "credentials",
                    "idle RSS MB",
                    "peak RSS MB",
                    "RSS per credential KB",
                    "start-up s",
                    "config + setup s",
                    "adoption s",
                    "adopted",
                    "IdP requests",
                    "idle CPU",
                ],
                rows,
            ),
            "",
        ]
    return "\n".join(parts) + "\n"


def oidc_section(results: dict[str, Any]) -> str:
    o = results.get("oidc") or {}
    if not o:
        return ""
    rows = []
    for key, name in (("oidc", "oidc-provider (real, Node)"), ("fake", "benchmark fake IdP")):
        c = o.get(key)
        if not c:
            rows.append([name, "failed", "", "", "", "", ""])
            continue
        r = c.get("reader") or {}
        rows.append(
            [
                name,
                f"{c['rotations_per_s']:.1f}",
                f(c.get("cpu_per_rotation_ms"), 2),
                f"{ms(_get(c, 'lateness_hist', 'p50'))} / {ms(_get(c, 'lateness_hist', 'p99'))}",
                f"{r.get('expired', DASH)} of {r.get('reads', 0):,}",
                f(r.get("min_fraction"), 3),
                f"{c['failures']['mints']} / {c['failures']['writes']}",
            ]
        )
    ratio = _ratio(_get(o, "oidc", "cpu_per_rotation_ms"), _get(o, "fake", "cpu_per_rotation_ms"))
    spec = _get(o, "oidc", "spec") or _get(o, "fake", "spec") or {}
    return (
        "\n".join(
            [
                "## Real IdP check (oidc-provider)\n",
                f"The same daemon against the real OAuth server the integration tests use (opaque tokens) and against "
                f"the benchmark's fake (~1 KB JWTs), {spec.get('n', '?')} credentials with "
                f"{spec.get('lifetime', '?'):g} s tokens, {spec.get('duration', '?'):g} s each. syncd CPU per rotation "
                f"real / fake: **{f(ratio, 2, 'x')}**; "
                "a ratio near 1 means the fake is not flattering the numbers above.\n",
                table(
                    [
                        "IdP",
                        "rotations/s",
                        "CPU ms/rotation",
                        "lateness p50 / p99",
                        "expired reads",
                        "min fraction",
                        "failed mints / writes",
                    ],
                    rows,
                ),
                "",
            ]
        )
        + "\n"
    )


def profile_section(results: dict[str, Any]) -> str:
    main = main_case(results)
    prof = _get(main, "profile")
    parts = ["## Where syncd's CPU goes\n"]
    micro = results.get("micro") or {}
    pieces = [
        ("one token request through `mint` (httpx)", _get(micro, "http_client", "httpx_mint_us"), "floor too"),
        (
            "file store write as awaited (thread hand-off, atomic write, 2 fsyncs)",
            _get(micro, "store", "file_write_us"),
            "floor too",
        ),
        ("APScheduler re-schedule (`Engine._schedule`)", _get(micro, "scheduler", 0, "reschedule_us"), "syncd only"),
        ("two info log events", _get(micro, "logging", "rotation_logs_us"), "syncd only"),
        ("Prometheus updates", _get(micro, "metrics", "rotation_metrics_us"), "syncd only"),
    ]
    pieces = [p for p in pieces if p[1] is not None]
    if pieces and main:
        total = sum(p[1] for p in pieces)
        rows = [[name, f"{us / 1000:.2f}", note] for name, us, note in pieces]
        rows.append(["**sum of the pieces** (in-process, cache-hot loops)", f"**{total / 1000:.2f}**", ""])
        fl = _get(results, "stores", "file", "floor", "cpu_per_rotation_ms")
        pf = _get(results, "stores", "file", "floor_paced", "cpu_per_rotation_ms")
        if fl:
            rows.append(["measured: floor, back to back", f"{fl:.2f}", "bench/floor.py"])
        if pf:
            rows.append(["measured: floor paced at 67/s", f"{pf:.2f}", "same calls, one at a time"])
        rows.append(
            ["measured: syncd at 67/s (1,000 x 30 s)", f"{main['cpu_per_rotation_ms']:.2f}", "psutil, whole process"]
        )
        parts += [
            "**A rotation's CPU, piece by piece** (file store; ms per rotation). The pieces are measured one by one "
            "in `bench/micro.py`; the rest of what the daemon pays is the event loop and thread wake-ups of handling "
            "each rotation on its own (compare the paced floor with the back-to-back one), engine bookkeeping "
            "(`_publish`, `_update_state`, `asyncio.gather` per run) and the APScheduler firing path.\n",
            table(["piece", "CPU ms", "who pays"], rows),
            "",
        ]
    if not prof or not prof.get("samples"):
        parts.append(f"No profile in this run{': ' + prof['error'] if prof and prof.get('error') else ''}.\n")
    else:
        parts.append(
            f"py-spy (`record --gil --nonblocking`, 200 Hz, {prof.get('seconds', 0):g} s) on the daemon of the "
            "1,000 x 30 s "
            "case right after its window. `--gil` samples only the thread holding the GIL, i.e. Python executing, "
            "so the shares below are shares of syncd's Python CPU; time inside system calls (fsync, socket I/O, "
            f"futex wake-ups), {f(main and main.get('cpu_system_share') and 100 * main['cpu_system_share'], 0, '%')} "
            "of its CPU, is not in them. A sample is charged to the first frame, from the leaf up, that belongs to a "
            f"known component. Full profile (speedscope format): `{prof.get('file')}`.\n"
        )
        bao = _get(_active(results, "openbao"), "profile") or {}
        bao_cats = dict(bao.get("categories") or [])
        head = ["component", "file store, share of Python CPU"]
        if bao_cats:
            head.append("OpenBao store (same, 10 s)")
        names = [k for k, _ in prof["categories"]] + [k for k in bao_cats if k not in dict(prof["categories"])]
        rows = []
        for k in names:
            row = [k, f"{dict(prof['categories']).get(k, 0.0):.1f}%"]
            if bao_cats:
                row.append(f"{bao_cats.get(k, 0.0):.1f}%")
            rows.append(row)
        parts.append(table(head, rows))
        top3 = ", ".join(f"{k} ({v:.0f}%)" for k, v in prof["categories"][:3])
        line = f"\nLargest components, file store: {top3}."
        if bao_cats:
            btop = sorted(bao_cats.items(), key=lambda kv: -kv[1])[:3]
            line += " OpenBao store: " + ", ".join(f"{k} ({v:.0f}%)" for k, v in btop) + "."
        parts.append(line + "\n")
        parts.append("Top functions by own time (file store):\n")
        parts.append(
            table(["function", "self"], [[f"`{k.replace(f'{ROOT}/', '')}`", f"{v:.1f}%"] for k, v in prof["self"][:12]])
        )
        parts.append("")
    micro = results.get("micro")
    if micro:
        lg, mt, hp = micro.get("logging", {}), micro.get("metrics", {}), micro.get("hot_path", {})
        sched = micro.get("scheduler") or []
        rows = [
            [
                "two info log events of a rotation (`mint`, `write`), structlog + redaction + JSON",
                f(lg.get("rotation_logs_us"), 0, " µs"),
                "syncd only",
            ],
            [
                "... the same with `log_level = warning` (events filtered)",
                f(lg.get("rotation_logs_filtered_us"), 0, " µs"),
                "syncd only",
            ],
            [
                "Prometheus updates of one rotation (11 label lookups + sets/incs/observes)",
                f(mt.get("rotation_metrics_us"), 0, " µs"),
                "syncd only",
            ],
        ]
        for s in sched:
            rows.append(
                [
                    f"re-schedule one credential with APScheduler (`Engine._schedule`), {s['jobs']:,} jobs",
                    f(s["reschedule_us"], 0, " µs"),
                    f"syncd only; a bare `loop.call_at` timer: {s['loop_call_at_us']:.0f} µs",
                ]
            )
        hc = micro.get("http_client") or {}
        if hc:
            rows.append(
                [
                    "one token request through syncd's `mint` (httpx client from `build_http_client`)",
                    f(hc.get("httpx_mint_us"), 0, " µs"),
                    "floor too; the largest single cost of a rotation",
                ]
            )
            if hc.get("httpx_mint_with_sniffio_us"):
                rows.append(
                    [
                        "... the same with `sniffio` importable",
                        f(hc.get("httpx_mint_with_sniffio_us"), 0, " µs"),
                        "what adding the dependency changes",
                    ]
                )
            rows.append(
                [
                    "the same POST with `aiohttp.ClientSession` (already a syncd dependency), body parsed",
                    f(hc.get("aiohttp_post_us"), 0, " µs"),
                    "for scale: the HTTP client's own share",
                ]
            )
        if not hp.get("sniffio_installed"):
            rows.append(
                [
                    "failed `import sniffio` (httpcore, twice per request when sniffio is absent)",
                    f(hp.get("sniffio_import_us"), 0, " µs"),
                    "floor too (same httpx)",
                ]
            )
        rows += [
            [
                "`oauth._is_vschar` on a 1 KB token",
                f(hp.get("is_vschar_1kb_token_us"), 1, " µs"),
                "floor too (same mint)",
            ],
            [
                "`payload.to_rfc3339`, 3-6 per rotation",
                f(hp.get("to_rfc3339_us"), 1, " µs"),
                f"`datetime.isoformat` alone: {f(hp.get('isoformat_us'), 1, ' µs')}",
            ],
        ]
        ca = micro.get("client_auth") or {}
        for alg, what in (("RS256", "RSA 2048"), ("ES256", "EC P-256"), ("EdDSA", "Ed25519"), ("HS256", None)):
            if ca.get(f"{alg}_assertion_us") is None:
                continue
            label = (
                f"client assertion per mint: private_key_jwt {alg} ({what} key), file read + cached key + sign"
                if what
                else "client assertion per mint: client_secret_jwt HS256"
            )
            parse = ca.get(f"{alg}_key_parse_us")
            note = (
                f"syncd only; parsing a rotated key once: {f(parse, 0, ' µs')}" if parse is not None else "syncd only"
            )
            rows.append([label, f(ca[f"{alg}_assertion_us"], 0, " µs"), note])
        for r in mt.get("render") or []:
            rows.append(
                [
                    f"render /metrics at {r['credentials']:,} credentials ({r['lines']:,} lines, {r['kb']:,.0f} KB)",
                    f"{r['ms']:,.0f} ms",
                    "one render, in-process (what a scrape costs the daemon in CPU)",
                ]
            )
        reg = lg.get("registry_growth") or []
        irr = lg.get("irregular_growth") or []
        if reg:
            rows.append(
                [
                    f"rotation logs with {reg[-1]['registered']:,} minted JWTs in the redaction registry",
                    f(reg[-1]["rotation_logs_us"], 0, " µs"),
                    f"{lg.get('registry_bytes_per_token', 0):,.0f} bytes kept per token",
                ]
            )
        if irr:
            for x in irr:  # results before the field was named: the loop registered 2 x "registered" entries
                x.setdefault("irregular_entries", 2 * x.get("registered", 0))
            if "regular_entries" in irr[-1]:  # a fixed number registered; where their forms went is measured
                rows.append(
                    [
                        f"rotation logs with {irr[-1]['registered']:,} standard-base64 secrets (`+`, `/`, `=`: a "
                        f"percent-encoded form each) registered, {irr[-1]['irregular_entries']:,} of their forms "
                        "in the linear-scan set",
                        f(irr[-1]["rotation_logs_us"], 0, " µs"),
                        ", ".join(f"{x['registered']:,} → {x['rotation_logs_us']:,.0f} µs" for x in irr),
                    ]
                )
            else:
                rows.append(
                    [
                        f"rotation logs with {irr[-1]['irregular_entries']:,} percent-encoded secret forms "
                        "registered (standard-base64 secrets or opaque tokens)",
                        f(irr[-1]["rotation_logs_us"], 0, " µs"),
                        "grows linearly: "
                        + ", ".join(f"{x['irregular_entries']:,} → {x['rotation_logs_us']:,.0f} µs" for x in irr),
                    ]
                )
        scan = lg.get("scan_set_growth") or []
        if scan:
            rows.append(
                [
                    f"rotation logs with {scan[-1]['registered']:,} secrets holding a character outside "
                    f"`[A-Za-z0-9._~+/=%-]` registered ({scan[-1]['irregular_entries']:,} linear-scan entries)",
                    f(scan[-1]["rotation_logs_us"], 0, " µs"),
                    ", ".join(f"{x['registered']:,} → {x['rotation_logs_us']:,.0f} µs" for x in scan),
                ]
            )
        parts += [
            "\n**Micro-measurements** (`bench/micro.py`: syncd's own code in-process, CPU per call, median of 5)\n",
            table(["what", "CPU", "note"], rows),
            "",
        ]
    return "\n".join(parts) + "\n"


def _prototypes(results: dict[str, Any]) -> list[str]:
    """The prototype patches that changed something (sniffio is a no-op once it is installed)."""
    patches = _get(results, "fixes", "prototype_fixes", "spec", "patches") or []
    installed = _get(results, "micro", "hot_path", "sniffio_installed")
    return [p for p in patches if p != "probe" and not (p == "sniffio" and installed)]


def _prototype_label(results: dict[str, Any]) -> str:
    names = {"timers": "timer", "sniffio": "sniffio"}
    parts = [names.get(p, p) for p in _prototypes(results)]
    return " and ".join(parts) + (" fixes" if len(parts) > 1 else " fix")


def _variant_rows(results: dict[str, Any], fixes: dict[str, Any]) -> list[list[str]]:
    names = {
        "baseline": "syncd as is",
        "log_level_warning": "`SYNCD_DAEMON__LOG_LEVEL=warning` (the two info events per rotation filtered)",
        "prototype_fixes": f"{_prototype_label(results)} prototyped (`--patch {','.join(_prototypes(results))}`)",
    }
    rows = []
    for key, label in names.items():
        v = fixes.get(key)
        if not v:
            continue
        rows.append(
            [
                label,
                f"{v.get('rotations_per_s', 0):.1f}",
                f"{f(v.get('cpu_per_rotation_ms'), 2)}{_spread(v.get('cpu_per_rotation_ms_slices') or [])}",
                f(v.get("cpu_cores"), 3),
                f(v.get("rss_growth_mb_per_h"), 0),
                ms(_get(v, "lateness_hist", "p99")),
            ]
        )
    return rows


def fixes_section(results: dict[str, Any]) -> str:
    """Findings with the engine change that fixes each, shown only when the data shows the problem."""
    main = main_case(results)
    micro = results.get("micro") or {}
    fixes = {k: v for k, v in (results.get("fixes") or {}).items() if v}
    base = fixes.get("baseline") or main
    items: list[str] = []
    floor = _get(results, "stores", "file", "floor", "cpu_per_rotation_ms")
    cpr = _get(base, "cpu_per_rotation_ms")

    def measured(key: str, what: str) -> str:
        v = fixes.get(key)
        if not v or not base or not v.get("cpu_per_rotation_ms") or not base.get("cpu_per_rotation_ms"):
            return ""
        b, x = base["cpu_per_rotation_ms"], v["cpu_per_rotation_ms"]
        return (
            f" *Measured {what}:* {b:.2f} → {x:.2f} ms CPU per rotation ({100 * (x - b) / b:+.0f}%), "
            f"{base.get('cpu_cores', 0):.3f} → {v.get('cpu_cores', 0):.3f} core at 67 rotations/s."
        )

    reg = micro.get("registry") or {}
    per_token = _get(micro, "logging", "registry_bytes_per_token")
    if reg.get("tokens_still_registered", 0) > 5:
        items.append(
            "**Every minted token stays in the redaction registry: memory grows without bound.** After "
            f"{reg['refreshes']} refreshes of one credential the log redactor still holds "
            f"{reg['tokens_still_registered']} of its tokens (~{f(per_token, 0)} bytes each for a ~1 KB JWT): "
            "`Engine._set_token` forgets a replaced token only if it has already expired when it is replaced, "
            "which with refresh at half-life never happens. At 67 rotations/s that is ~200 MB/h. Opaque tokens in "
            "standard base64 (`+`, `/`, `=`) make it a CPU problem too: their percent-encoded variant goes to the "
            "registry's linear-scan set, and the micro-measurement below shows the log events of a rotation "
            "growing linearly with it. **Fix** (`Engine._set_token`): keep the last one or two replaced tokens "
            "per credential, or a heap by expiry, and `forget_secret` the rest. Expected gain: flat memory."
        )
    sched = (micro.get("scheduler") or [None])[0]
    if sched and sched["reschedule_us"] > 3 * sched["loop_call_at_us"]:
        items.append(
            f"**Re-scheduling through APScheduler: ~{sched['reschedule_us']:.0f} µs and two system calls per run.** "
            "`Engine._schedule` calls `scheduler.add_job(..., DateTrigger(...), replace_existing=True)` after "
            "every run: a new `Job` (with `inspect.signature` validation of the callable and a func reference "
            "round-trip), date conversion, a replace in the memory job store, and `AsyncIOScheduler.wakeup()`, "
            "which is `call_soon_threadsafe` (a self-pipe write, a loop wake-up and read) followed by a full "
            "`_process_jobs` pass; when the job fires, `_process_jobs` again computes run times, submits through "
            "the executor and dispatches events. **Fix** (`Engine._schedule`, `Engine._remove_job`): keep "
            "APScheduler for the heartbeat, and give each credential one `loop.call_at` timer handle (cancel and "
            "re-arm; the handle runs `create_task(self.run_credential(name, planned))`, kept in a task set of "
            "the engine so `stop()` drains it). If APScheduler must stay per credential: subclass "
            "`AsyncIOScheduler` so `wakeup()` uses `call_soon` from the loop thread and is coalesced. Expected gain: "
            f"~{sched['reschedule_us'] - sched['loop_call_at_us']:.0f} µs of Python per rotation for the re-add "
            f"alone (a bare timer costs {sched['loop_call_at_us']:.0f} µs), plus the firing path."
        )
    hp = micro.get("hot_path") or {}
    hc = micro.get("http_client") or {}
    sniff_gain = (
        hc["httpx_mint_us"] - hc["httpx_mint_with_sniffio_us"]
        if hc.get("httpx_mint_us") and hc.get("httpx_mint_with_sniffio_us")
        else 2 * hp.get("sniffio_import_us", 0)
    )
    if hp and not hp.get("sniffio_installed") and hp.get("sniffio_import_us", 0) > 5:
        items.append(
            f"**httpcore performs a failed `import sniffio` twice per token request (~{hp['sniffio_import_us']:.0f} "
            "µs each).** `httpcore._synchronization.current_async_library()` imports sniffio on every call; "
            "sniffio is not installed here (recent anyio no longer depends on it), so every attempt searches "
            "`sys.path` again with `stat` calls (visible in the profile as `_find_spec`/`_path_stat`). **Fix** "
            "(`pyproject.toml`): add `sniffio` to the dependencies. Expected gain (measured on `mint` with sniffio "
            f"importable): ~{sniff_gain:.0f} µs per mint, for syncd and for the floor alike."
        )
    if fixes.get("prototype_fixes") and items:
        items[-1] += measured("prototype_fixes", f"with the {_prototype_label(results)} prototyped")
    lg = micro.get("logging") or {}
    quiet = fixes.get("log_level_warning")
    if lg.get("rotation_logs_us") and cpr:
        gain = None
        if quiet and quiet.get("cpu_per_rotation_ms") and base and base.get("cpu_per_rotation_ms"):
            gain = 1 - quiet["cpu_per_rotation_ms"] / base["cpu_per_rotation_ms"]
        significant = (gain is not None and gain >= 0.05) or (
            gain is None and lg["rotation_logs_us"] / 1000 / cpr >= 0.05
        )
        share = 100 * lg["rotation_logs_us"] / 1000 / cpr
        if significant:
            items.append(
                f"**Logging: two info events per rotation, ~{lg['rotation_logs_us']:.0f} µs in a tight loop "
                f"({share:.0f}% of a rotation's CPU).** **Fix** (`syncd/logs.py`, `redact`): skip the fields syncd "
                "fills itself (fingerprints, RFC 3339 times, target names, outcomes), which cannot hold a secret; "
                "and (`Engine`) log one `rotated` info event per fully successful rotation, keeping the "
                "per-target `write` event at debug unless it failed. Expected gain: up to "
                f"~{lg['rotation_logs_us'] - lg.get('rotation_logs_filtered_us', 0):.0f} µs per rotation."
                + measured("log_level_warning", "with both events filtered (`log_level = warning`)")
            )
        else:
            moved = (
                f", and filtering both moved CPU per rotation by {100 * -gain:+.0f}% (noise)"
                if gain is not None
                else ""
            )
            items.append(
                f"**Not bottlenecks: logging and metrics.** The two info events of a rotation cost "
                f"~{lg['rotation_logs_us']:.0f} µs ({share:.0f}% of a rotation's CPU){moved}; the Prometheus "
                f"updates ~{_get(micro, 'metrics', 'rotation_metrics_us') or 0:.0f} µs. Merging `mint` and `write` "
                "into one `rotated` info event would halve the former; nothing else is worth doing there."
            )
    irr = _get(micro, "logging", "irregular_growth") or []
    for x in irr:  # results before the field was named: the loop registered entries = 2 x "registered"
        x.setdefault("irregular_entries", 2 * x.get("registered", 0))
    # Only when the forms went to the linear-scan set (they no longer do) and logging slowed with them.
    if (
        len(irr) >= 2
        and irr[-1]["irregular_entries"] > irr[0]["irregular_entries"]
        and irr[-1]["rotation_logs_us"] > 4 * irr[0]["rotation_logs_us"]
    ):
        a, b = irr[0], irr[-1]
        per_k = (b["rotation_logs_us"] - a["rotation_logs_us"]) / (
            (b["irregular_entries"] - a["irregular_entries"]) / 1000
        )
        n_max = max((c["spec"]["n"] for c in _get(results, "stores", "file", "active") or []), default=10000)
        extra_ms = per_k * 3 * n_max / 1000 / 1000
        items.append(
            "**Redaction cost grows with the number of secrets that have a percent-encoded form.** "
            "`logs._SecretRegistry` finds most secrets in one pass (candidate split + set lookup), but a "
            "registered value whose `quote_plus`/`quote` form differs (a client secret or an opaque token in "
            "standard base64, with `+`, `/` or `=`) puts that form in the *irregular* set, which `scrub` "
            "searches one by one in every logged string. Measured: the two log events of a rotation cost "
            + ", ".join(f"{x['rotation_logs_us']:,.0f} µs with {x['irregular_entries']:,}" for x in irr)
            + f" percent-encoded forms registered (~{per_k:,.0f} µs per 1,000). The registry is bounded now (the "
            "current and two replaced tokens per credential, plus its client secret), but a fleet of "
            f"{n_max:,} credentials with such secrets would hold ~{3 * n_max:,} of them: ~{extra_ms:,.1f} ms more "
            "per rotation"
            + (f" (+{100 * extra_ms / cpr:.0f}% on syncd's CPU per rotation today)" if cpr else "")
            + ". **Fix** (`syncd/logs.py`): add `%` "
            "to `_CANDIDATE_RE` and `_REGULAR_RE` (percent-encoded forms are then found by the same set lookup "
            "as every other secret) and to the separators `_contains_secret` splits on. Expected gain: redaction "
            "cost independent of the number of secrets."
        )
    renders = micro.get("metrics", {}).get("render") or []
    big = _active(results, "file", 10000) or main
    stall = max((_get(big, "scraped", "livez_max_ms") or 0.0, _get(big, "scrape", "loop_stall_ms") or 0.0), default=0.0)
    if renders and stall > 100:
        r10 = max(renders, key=lambda r: r["credentials"])
        n_big = _get(big, "spec", "n") or 0
        sc = _get(big, "scraped") or {}
        created = (
            " About a third of the lines are `*_created` samples: `prometheus_client.disable_created_metrics()` "
            "removes them."
            if r10.get("created_lines")
            else ""
        )
        under = (
            f" With Prometheus-like scrapes every {sc['interval_s']:g} s the lateness p99 was "
            f"{ms((sc.get('lateness_hist') or {}).get('p99'))} "
            f"(max ≤{ms((sc.get('lateness_hist') or {}).get('max_le'), 0)}) "
            f"against {ms(_get(big, 'lateness_hist', 'p99'))} for the window itself."
            if sc.get("lateness_hist")
            else ""
        )
        items.append(
            f"**A /metrics scrape still stalls the event loop: up to {stall:,.0f} ms at {n_big:,} credentials.** "
            f"A render costs {r10['ms']:,.0f} ms of CPU at {r10['credentials']:,} credentials ({r10['lines']:,} "
            f"lines, {r10['kb']:,.0f} KB, in `bench/micro.py`). The per-credential series keep their lines "
            "rendered (`syncd/exposition.py`) and the scrape yields to the loop between metric families, so a "
            "stall this long is one family's join on a slow (busy) machine, or something else holding the loop "
            f"(longest /livez answer during scrapes: {stall:,.0f} ms).{under}{created}"
            + (
                f" Peak memory: {big['peak_rss_mb']:,.0f} MB at {n_big:,} credentials "
                f"against {big['rss_end_mb']:,.0f} MB in steady state."
                if big.get("peak_rss_mb") and big.get("rss_end_mb") and big["peak_rss_mb"] - big["rss_end_mb"] > 30
                else ""
            )
            + " **Fix** (`syncd/metrics.py`, `syncd/server.py`): if one family's join is the stall, yield within "
            "it (in slices of a few thousand lines)."
        )
    if hc.get("httpx_mint_us") and hc.get("aiohttp_post_us") and hc["httpx_mint_us"] > 2 * hc["aiohttp_post_us"]:
        best = hc.get("httpx_mint_with_sniffio_us") or hc["httpx_mint_us"]
        items.append(
            f"**The biggest single cost is the HTTP client, in syncd and floor alike: a token request through "
            f"`mint` costs ~{hc['httpx_mint_us']:,.0f} µs of CPU"
            + (f" ({best:,.0f} µs with sniffio)" if hc.get("httpx_mint_with_sniffio_us") else "")
            + f", the same POST with aiohttp's client ~{hc['aiohttp_post_us']:,.0f} µs.** httpx goes through "
            "httpcore's connection pool, "
            "anyio cancel scopes and a per-request cookie jar pass; at 67 rotations/s that is "
            f"~{67 * best / 1e6:.2f} of a core before anything is written. This is a design choice (design.md "
            "names httpx for `oauth`), not an engine bug, so it is only an option: behind `mint()`'s small "
            "contract, an `aiohttp.ClientSession` transport (aiohttp is already a dependency, for the server) "
            f"would save ~{best - hc['aiohttp_post_us']:,.0f} µs per rotation, more than every engine fix above "
            "together, and lower the floor with it."
        )
    st = micro.get("store") or {}
    if st.get("path_for_us", 0) > 10:
        items.append(
            f"**The file store resolves its directory on every write: `FileStore.path_for` costs "
            f"~{st['path_for_us']:.0f} µs per call** (`Path.resolve()` of the directory and of the target, a "
            "realpath with an `lstat` per path component, in the worker thread, holding the GIL between the "
            "system calls). **Fix** (`syncd/stores/file/store.py`): resolve `self.directory` once in `__init__` "
            "and keep the checked path per key in a dict (keys are fixed by the configuration); re-check only when the "
            "write fails with ENOENT/ENOTDIR. Expected gain: "
            f"~{st['path_for_us']:.0f} µs per file write, for syncd and the floor alike."
        )
    paced = _get(results, "stores", "file", "floor_paced", "cpu_per_rotation_ms")
    cores = _get(base, "cpu_cores")
    if cpr and cores and (cores > CPU_TARGET or (floor and cpr > 1.5 * floor)):
        rate = cores / cpr * 1000  # rotations/s of the measured case
        text = [
            f"**What it takes to meet the CPU targets.** At {rate:.0f} rotations/s syncd uses {cores:.3f} core "
            f"({cpr:.2f} ms per rotation); {CPU_TARGET} core means {1000 * CPU_TARGET / rate:.2f} ms per rotation."
        ]
        proto = fixes.get("prototype_fixes") or {}
        est = cpr
        if proto.get("cpu_per_rotation_ms"):
            est = proto["cpu_per_rotation_ms"] * cpr / (fixes.get("baseline") or base)["cpu_per_rotation_ms"]
            text.append(
                f"The {_prototype_label(results)}, prototyped, measured {proto['cpu_per_rotation_ms']:.2f} ms "
                f"against {(fixes.get('baseline') or base)['cpu_per_rotation_ms']:.2f} ms in the same run."
            )
        if hc.get("aiohttp_post_us") and (hc.get("httpx_mint_with_sniffio_us") or hc.get("httpx_mint_us")):
            after = hc.get("httpx_mint_with_sniffio_us") or hc["httpx_mint_us"]
            est2 = est - (after - hc["aiohttp_post_us"]) / 1000
            text.append(
                f"An aiohttp token client on top would take it to about {est2:.2f} ms "
                f"(~{est2 * rate / 1000:.2f} core, estimated from the micro-measurements)."
            )
        if paced and floor:
            text.append(
                f"What remains is mostly what the floor pays too: the same calls paced at 67/s cost {paced:.2f} ms "
                f"against {floor:.2f} ms back to back, i.e. {max(paced - floor, 0):.2f} ms per rotation is the cost of "
                "handling each rotation on its own (a loop wake-up, an idle thread-pool worker and connection "
                "woken per rotation), and the fsync'ed file write is "
                f"~{(_get(micro, 'store', 'file_write_us') or 0) / 1000:.2f} ms. syncd / paced floor is "
                f"{cpr / paced:.2f}x, the like-for-like view of syncd's own overhead; syncd / back-to-back floor, "
                f"the target's definition, is {cpr / floor:.2f}x."
            )
        items.append(" ".join(text))
    if not items:
        return ""
    parts = ["## What limits syncd, and the engine fixes that would help\n"]
    rows = _variant_rows(results, fixes)
    if rows:
        spec = _get(fixes, "baseline", "spec") or {}
        parts.append(
            "Measured in this run, file store, 1,000 x 30 s tokens (~67 rotations/s), "
            f"{spec.get('duration', 0):g} s windows, each variant started through `bench/variant.py` (which "
            "patches the running process only; nothing in `syncd/` is changed):\n"
        )
        parts.append(
            table(
                [
                    "variant",
                    "rotations/s",
                    "CPU ms/rotation (6 slices)",
                    "CPU (cores)",
                    "RSS drift MB/h (2nd half)",
                    "lateness p99",
                ],
                rows,
            )
            + "\n"
        )
    parts.append("\n\n".join(f"{i}. {text}" for i, text in enumerate(items, 1)))
    return "\n".join(parts) + "\n\n"


METHOD = """## Method

- **Processes.** Every server runs as its own process on 127.0.0.1, started by the harness under the test
  peers' guard (`tests/peers/servers.py`) and stopped at the end (also when the harness dies): the benchmark
  fake IdP (`bench/fake_idp.py`, a raw-asyncio Keycloak look-alike issuing ~1 KB JWTs, accepting any
  client), the real oidc-provider, `bao server -dev`, `moto_server`. syncd runs as `syncd run -c <generated
  config>`, also under the guard; the numbers are its own pid's: CPU = user + system time of all its threads
  (psutil), RSS = `memory_info().rss`, peak = the kernel's `VmHWM`.
- **Configuration.** Production defaults, scaled with the token lifetime: `refresh_at = 0.5`, `jitter = 0.1`,
  `min_remaining = lifetime / 10` (30 s for 5-minute tokens, the shipped default), JSON logs at `info`,
  `max_concurrent_mints = 32`. One target per credential. File targets are fsync'ed (the default).
- **Steady state from the first second.** Before syncd starts, the harness writes a fresh token for every
  credential straight into the store, in the wire format, with `issued_at` spread evenly over one refresh
  interval; syncd adopts them all (start-up adoption, with 0 IdP requests, is checked on every case) and its
  refreshes arrive at the steady rate right away, instead of in a wave that takes many lifetimes to even out.
- **Window.** CPU, rotations (successful `write` events in syncd's log) and the consumer's reads are counted
  over the same window, after start-up. CPU per rotation is also computed over six equal slices of the window;
  their range shows the noise of the shared machine.
- **Lateness.** The histogram `syncd_schedule_lateness_seconds` is read by one scrape right after the window
  (so it covers the whole run; nothing scrapes during the window); p50/p99 are interpolated as Prometheus
  does, the max is the upper bound of the highest non-empty bucket. A scrape slows the loop while it renders
  (measured below), so the rotations that ran during that reading scrape are in the figure; the table says
  how many where it matters. The log figure is exact: a `mint` event's start (`timestamp - duration`) minus
  the previous token's `refresh_after`, for every mint in the window that follows a mint of the same
  credential (so not the first refresh of an adopted token: with 5-minute tokens a 45 s window has none).
  For 1,000 and 10,000 credentials a further 30 s with `/metrics` scraped every 15 s, as Prometheus would,
  gives the production view: the histogram's growth between the first and last scrape, and the longest
  answer time of `/livez` polled every 10 ms meanwhile (how long the loop was stuck).
- **Consumer.** `bench/reader.py`, a separate process without syncd's code, reads every target when it is
  stalest: at the `refresh_after` the payload announces, then every 20-50 ms until the new token appears,
  plus random reads. Expired reads must be 0; the minimum remaining fraction is the real worst case. Its
  visible lag (first sighting of the new token minus the old `refresh_after`) is lateness + mint + write +
  its polling interval.
- **Floor and naive** run in the same invocation, right after the daemon case, against the same kind of
  server: `bench/floor.py` (syncd's `build_http_client`, `mint`, `TokenPayload` and store `write`, back to
  back, CPU by `time.process_time()`), and `bench/naive_rotate.py` (a fresh interpreter per rotation
  importing httpx and the store SDK, CPU of the children by `getrusage(RUSAGE_CHILDREN)`). Repeated runs
  report the median. The **bare aiohttp floor** (`bench/bare_floor.py`) is the cheapest honest client, with
  no syncd code: an `aiohttp.ClientSession` POST, the same payload document, and the bare store write (the
  file store's temp file + fsync + rename + directory fsync inline; OpenBao's two KV v2 requests on the same
  session; boto3's PutParameter / PutSecretValue inline). syncd / bare floor is the price of everything syncd
  adds to a token request and a write: validation, redaction, timeouts, scheduling, metrics, logs.
- **100,000 credentials** (`large`): the loaded case at ~167 rotations/s (20-minute tokens), file store.
  **Soak** (`soak`, `--soak 30m`): 30 minutes at ~67 rotations/s, `/metrics` every 15 s, RSS every 10 s; the
  slope of the second half and of its three windows tells a leak (every window grows) from noise.
- **Memory over time.** "RSS drift" is the slope of RSS over the second half of a window. Windows of 30-60 s
  cannot tell a slow leak from a daemon still filling its steady-state structures (the redactor keeps a few
  replaced tokens per credential; a 5-minute token needs minutes to be replaced twice) or from allocator
  noise, so drifts of tens of MB/h here are not evidence of a leak. The leak check is deterministic instead:
  `bench/micro.py` refreshes one credential 20 times through the engine's own `_set_token` on a fake clock and
  counts the tokens the redactor still holds.
- **Noise.** The machine is shared with other engineers' test runs, so absolute numbers move by 10-20%
  between runs; ratios measured in the same run are the figures to compare.
"""


def _machine_row(meta: dict[str, Any]) -> list[str]:
    """One run's machine, load and commit (a merged report has one row per run it merges)."""
    return [
        f"`{meta.get('command', '?')}` ({meta.get('elapsed_s', 0) / 60:.0f} min)",
        str(meta.get("cpus")),
        str(meta.get("cpu_model", "")),
        f"{meta.get('memory_gib')} GiB",
        str(meta.get("python")),
        str(meta.get("platform", "")),
        f"{' '.join(f'{x:.1f}' for x in meta.get('load_avg_start', []))} → "
        f"{' '.join(f'{x:.1f}' for x in meta.get('load_avg_end', []))}",
        f"{meta.get('commit', '?')}"
        + (
            f" + uncommitted changes to {len(meta['syncd_uncommitted'])} files in syncd/"
            if meta.get("syncd_uncommitted")
            else ""
        ),
    ]


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs' results as one: a later run's measured case groups replace an earlier one's, store by store.

    The merged ``meta`` is the first run's, with every run's own meta under ``parts`` (the doc's
    machine table shows one row per run, so each figure can be traced to its run's load and commit).
    """
    merged: dict[str, Any] = {"meta": dict(parts[0].get("meta", {})), "stores": {}, "errors": []}
    runs_before = 0
    for part in parts:
        for store, groups in part.get("stores", {}).items():
            # A case group a run did not measure is there empty (``active: []``) or None: it keeps the earlier run's.
            merged["stores"].setdefault(store, {}).update({k: v for k, v in groups.items() if v})
        # Each failure keeps the number of its run (the Machine table's row): a later run may have measured it.
        merged["errors"] += [{**e, "run": e.get("run", 1) + runs_before} for e in part.get("errors", [])]
        runs_before += len(part.get("meta", {}).get("parts") or [None])
    # A part that is itself a merge brings its own runs: one machine row per run, never one for the merge.
    runs = [run for part in parts for run in (part.get("meta", {}).get("parts") or [part.get("meta", {})])]
    merged["meta"]["parts"] = runs
    merged["meta"]["elapsed_s"] = sum(run.get("elapsed_s", 0) for run in runs)
    merged["meta"]["command"] = " + ".join(str(run.get("command", "?")) for run in runs)
    return merged


def write(results: dict[str, Any], out_dir: Path, results_path: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    has_plot = plot(results, out_dir / PLOT)
    meta = results.get("meta", {})
    rel = results_path.relative_to(ROOT) if results_path.is_relative_to(ROOT) else results_path
    lines = [
        "# Benchmarks\n",
        (
            f"Merged from {len(meta['parts'])} runs (`python -m bench --report`; one row each under Machine, with its "
            f"command, load and commit), {meta.get('elapsed_s', 0) / 60:.1f} min in all. "
            if len(meta.get("parts", [])) > 1
            else f"Generated by `{meta.get('command', 'make bench')}` (`.venv/bin/python -m bench`) on "
            f"{meta.get('date', '?')}, {meta.get('mode', '?')} run, {meta.get('elapsed_s', 0) / 60:.1f} min. "
        )
        + "Do not edit by hand: re-run to update. "
        f"Raw results: `{rel}`; logs and profiles of the run: `{meta.get('run_dir')}/` (not committed).\n",
        "```",
        "make bench                                     # full run (over an hour: 100,000 credentials, 30-min soak)",
        ".venv/bin/python -m bench --quick              # short windows, small N: written to .bench-out/ only",
        ".venv/bin/python -m bench --smoke              # ~2 min, every case at tiny sizes: does the harness work?",
        ".venv/bin/python -m bench --stores file --only scaling,floor,naive    # select stores and case groups",
        ".venv/bin/python -m bench --report bench/results/<run>.json           # re-render this doc from results",
        ".venv/bin/python -m bench --report A.json B.json  # one doc from several partial runs (later groups win)",
        ".venv/bin/python -m bench.startup --store openbao --n 10000 --spawn  # start-up adoption, step by step",
        ".venv/bin/python -m bench.memory -n 10000 [--rss]   # memory per credential, by component",
        "```\n",
        "## Machine\n",
        table(
            ["part", "cores", "CPU", "memory", "Python", "platform", "load avg start → end", "syncd commit"],
            [_machine_row(part) for part in meta.get("parts", [meta])],
        ),
        "\nThe machine is shared with other engineers running tests, so absolute figures are noisy; compare the "
        "ratios, which are measured in the same run.\n",
    ]
    rows = targets(results)
    if rows:
        met = sum(1 for r in rows if r["met"])
        lines += [
            f"## Targets ({met} of {len(rows)} met)\n",
            table(
                ["target", "measured", "result", "margin", "note"],
                [
                    [
                        r["target"],
                        r["measured"],
                        {True: "met", False: "**missed**", None: "\u2013"}[r["met"]],
                        r["margin"],
                        r["note"],
                    ]
                    for r in rows
                ],
            ),
            "",
        ]
    lines.append(round2_section(results))
    lines.append(fixes_section(results))
    lines.append(
        store_section(
            results,
            "file",
            "File store",
            "Local directory targets, atomic rename with fsync of file and directory (the default). The 1,000 x 30 s "
            "case is the 67 rotations/s target case; 10,000 x 5 min is the same rate with production token "
            "lifetimes.\n",
        )
    )
    lines.append(scaling_section(results) if has_plot or _get(results, "stores", "file", "startup") else "")
    lines.append(large_section(results))
    lines.append(soak_section(results))
    lines.append(
        store_section(
            results,
            "openbao",
            "OpenBao (KV v2)",
            "`bao server -dev` (in-memory). Each rotation is two requests (data with `cas`, then the path's "
            "`custom_metadata`), through hvac in syncd's store thread pool. The start-up case pre-populates the KV "
            "store directly with hvac (data = `TokenPayload.to_dict()`, custom_metadata as syncd writes it), then "
            "times "
            "syncd from spawn to its `started` event (every credential adopted or not) and counts IdP requests.\n",
        )
    )
    from bench.replicas import section as replicas_section  # it renders with this module's helpers

    lines.append(replicas_section(_get(results, "stores", "openbao") or {}))
    lines.append(
        store_section(
            results,
            "moto-ssm",
            "AWS SSM Parameter Store (moto)",
            "`moto_server` stands in for AWS. Rates respect AWS' own ceilings, not the emulator's: PutParameter allows "
            "10/s per region with higher throughput enabled (3/s by default), so this case runs at ~7 rotations/s with "
            "`max_writes_per_second = 10`. boto3 request signing runs in syncd's process and is part of its CPU.\n",
        )
    )
    lines.append(
        store_section(
            results,
            "moto-secretsmanager",
            "AWS Secrets Manager (moto)",
            "PutSecretValue shares a 50/s regional bucket (syncd's limiter defaults to 40/s), so this case runs at ~30 "
            "rotations/s. `quota_check = false` because 30 s test tokens would otherwise (rightly) be refused: no real "
            "secret can take a version every 15 s (see docs/aws.md).\n",
        )
    )
    lines.append(oidc_section(results))
    lines.append(profile_section(results))
    lines.append(METHOD)
    if results.get("errors"):
        merged = len(results.get("meta", {}).get("parts", [])) > 1
        lines.append("\n## Failures in the merged runs\n" if merged else "\n## Failures in this run\n")
        if merged:
            lines.append("Each with its run (the Machine table's row, from 1); a later run may have measured it.\n")
        for e in results["errors"]:
            run = f"run {e['run']}, " if merged and "run" in e else ""
            lines.append(f"- {run}{e['case']}: `{e['error']}`")
        lines.append("")
    text = "\n".join(x for x in lines if x is not None)
    (out_dir / "benchmarks.md").write_text(text.rstrip() + "\n")
