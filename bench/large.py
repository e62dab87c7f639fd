"""The report's parts for the 100,000-credential case and the soak (bench/report.py assembles them)."""

from __future__ import annotations

from typing import Any

from bench import report as rp

# Targets 4 and 5 of the performance round 2 (docs/benchmarks.md): one process, 100,000 credentials,
# 20-minute tokens; memory flat over a 30-minute soak.
LARGE_RSS_MB = 1024
LARGE_KB_PER_CREDENTIAL = 10
LARGE_CPU = 0.5
LARGE_P99_S = 0.25
#: A soak slope this small is flat whatever its windows say (1 MB/h is 24 MB a day).
SOAK_FLAT_MB_PER_H = 1.0


def _row(name: str, measured: float | None, limit: float, fmt: str, note: str = "") -> dict[str, Any]:
    if measured is None:
        return {"target": name, "measured": "not measured", "met": None, "margin": "", "note": note}
    met = measured <= limit
    if limit == 0:
        margin = "" if met else f"{fmt.format(measured)} instead of none"
    elif met:
        margin = f"{100 * (limit - measured) / limit:.0f}% headroom"
    else:
        margin = f"over by {100 * (measured - limit) / limit:.0f}%"
    return {"target": name, "measured": fmt.format(measured), "met": met, "margin": margin, "note": note}


def _soak_verdict(soak: dict[str, Any]) -> tuple[float | None, float | None, list[float]]:
    """(slope of the late half, the noise it is judged against, the three windows' slopes)."""
    slope = soak.get("late_half_mb_per_h")
    windows = [w for w in soak.get("windows_mb_per_h") or [] if w is not None]
    if slope is None or len(windows) < 2:
        return slope, None, windows
    return slope, max(max(windows) - min(windows), SOAK_FLAT_MB_PER_H), windows


def large_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    big = rp._get(results, "stores", "file", "large")
    if big and big.get("rotations"):
        n = big["spec"]["n"]
        label = f"{n:,} x {big['spec']['lifetime'] / 60:g} min"
        steady, peak = big.get("rss_end_mb"), big.get("peak_rss_mb")
        rows.append(
            _row(
                f"RSS <= 1 GB ({label}, ~{big['target_rate']:.0f} rot/s)",
                steady,
                LARGE_RSS_MB,
                "{:.0f} MB",
                f"at the window's end; peak {peak:.0f} MB (the one /metrics render after the window)" if peak else "",
            )
        )
        rows.append(
            _row(
                f"RSS per credential <= 10 KB ({label})",
                steady * 1024 / n if steady else None,
                LARGE_KB_PER_CREDENTIAL,
                "{:.1f} KB",
                "whole-process RSS / credentials (interpreter and libraries included)",
            )
        )
        rows.append(_row(f"avg CPU <= 0.5 core ({label})", big.get("cpu_cores"), LARGE_CPU, "{:.3f} core"))
        reader = big.get("reader") or {}
        if "reads" in reader:
            rows.append(
                _row(
                    f"zero expired reads ({label})", float(reader["expired"]), 0, "{:.0f}", f"{reader['reads']:,} reads"
                )
            )
        rows.append(
            _row(
                f"lateness p99 <= 250 ms ({label})",
                rp._get(big, "lateness_hist", "p99"),
                LARGE_P99_S,
                "{:.3f} s",
                "histogram, whole run",
            )
        )
    soak = rp._get(results, "stores", "file", "soak")
    if soak and soak.get("rss_samples"):
        slope, noise, windows = _soak_verdict(soak)
        minutes = (soak.get("late_half_s") or 0) / 60
        row = _row(
            f"RSS flat over a {soak['window_s'] / 60:.0f}-minute soak (slope of the last {minutes:.0f} min)",
            abs(slope) if slope is not None else None,
            noise if noise is not None else SOAK_FLAT_MB_PER_H,
            "{:.1f} MB/h",
            f"slope {slope:+.1f} MB/h; three windows: {', '.join(f'{w:+.1f}' for w in windows)} MB/h "
            "(noise = their spread, at least 1 MB/h)"
            if slope is not None
            else "",
        )
        rows.append(row)
    return rows


def large_section(results: dict[str, Any]) -> str:
    big = rp._get(results, "stores", "file", "large")
    if not big:
        return ""
    spec = big["spec"]
    parts = [
        f"## {spec['n']:,} credentials in one process\n",
        f"File store, {spec['n']:,} credentials with {spec['lifetime'] / 60:g}-minute tokens: "
        f"~{big['target_rate']:.0f} rotations/s, token lifetime scaled as in every loaded case (refresh at "
        "half-life, jitter 0.1). Measured like the other loaded cases (a reader polls the targets during the "
        f"{spec['duration']:g} s window; one /metrics scrape after it).\n",
    ]
    if big.get("merged_from"):
        parts.append(f"This case comes from a separate invocation, merged in: {big['merged_from']}.\n")
    reader = big.get("reader") or {}
    st = big.get("startup") or {}
    parts.append(
        rp.table(
            [
                "rotations/s",
                "CPU (cores)",
                "CPU ms/rotation",
                "RSS at window end MB",
                "RSS per credential KB",
                "peak RSS MB",
                "lateness p50 / p99 (histogram)",
                "expired reads",
                "start-up",
                "failed mints / writes",
            ],
            [
                [
                    rp.f(big.get("rotations_per_s"), 1),
                    rp.f(big.get("cpu_cores"), 3),
                    rp.f(big.get("cpu_per_rotation_ms"), 2),
                    rp.f(big.get("rss_end_mb"), 0),
                    rp.f((big.get("rss_end_mb") or 0) * 1024 / spec["n"], 1),
                    rp.f(big.get("peak_rss_mb"), 0),
                    f"{rp.ms(rp._get(big, 'lateness_hist', 'p50'))} / {rp.ms(rp._get(big, 'lateness_hist', 'p99'))}",
                    f"{reader.get('expired', '-')} of {reader.get('reads', 0):,}",
                    f"{rp.f(st.get('seconds'), 1)} s, {st.get('adopted')}/{spec['n']} adopted",
                    f"{rp._get(big, 'failures', 'mints')} / {rp._get(big, 'failures', 'writes')}",
                ]
            ],
        )
    )
    slices = big.get("cpu_per_rotation_ms_slices") or []
    if len(slices) > 1:
        parts.append(
            "\nCPU per rotation by sixth of the window: "
            + ", ".join(f"{x:.2f}" for x in slices)
            + " ms. It rises because the read-backs phase in, not because anything grows: a start-up "
            "adoption counts as the credential's first read-back, and each rotation plans the next one half a "
            "refresh interval later, so the first sixths rotate without read-backs and the later ones carry "
            "one per rotation, as every later cycle does (a cProfile of the daemon early and late in such a "
            "window counted 0 and ~160 read-backs per second beside ~150 rotations per second). The last "
            "sixth is the steady cost.\n"
        )
    return "\n".join(parts) + "\n"


def soak_section(results: dict[str, Any]) -> str:
    soak = rp._get(results, "stores", "file", "soak")
    if not soak or not soak.get("rss_samples"):
        return ""
    spec = soak["spec"]
    slope, noise, windows = _soak_verdict(soak)
    parts = [
        "## Soak\n",
        f"`python -m bench --soak {spec['duration'] / 60:g}m` (the full run includes it): file store, "
        f"{spec['n']:,} credentials x {spec['lifetime']:g} s tokens (~{spec['rate']:.0f} rotations/s) for "
        f"{soak['window_s'] / 60:.1f} min, /metrics scraped every {spec['scrape_interval']:g} s "
        f"({soak['scrapes']} scrapes, slowest {soak['scrape_wall_ms_max']:,.0f} ms), RSS sampled every "
        f"{spec['sample_interval']:g} s. The slope is a least-squares fit over the second half; the three windows "
        "cut that half in three: a leak shows in each of them, noise changes sign.\n",
    ]
    reader = soak.get("reader") or {}
    parts.append(
        rp.table(
            [
                "rotations/s",
                "CPU (cores)",
                "RSS start → end MB",
                "peak RSS MB",
                "slope, second half (MB/h)",
                "three windows (MB/h)",
                "expired reads",
            ],
            [
                [
                    rp.f(soak.get("rotations_per_s"), 1),
                    rp.f(soak.get("cpu_cores"), 3),
                    f"{soak['rss_start_mb']:.0f} → {soak['rss_end_mb']:.0f}",
                    rp.f(soak.get("peak_rss_mb"), 0),
                    f"{slope:+.1f}" if slope is not None else "-",
                    ", ".join(f"{w:+.1f}" for w in windows) or "-",
                    f"{reader.get('expired', '-')} of {reader.get('reads', 0):,}",
                ]
            ],
        )
    )
    if noise is not None and slope is not None:
        parts.append(
            f"\nSlope {slope:+.1f} MB/h against a noise of {noise:.1f} MB/h (the windows' spread): "
            + ("within noise." if abs(slope) <= noise else "**growing** beyond the noise.")
        )
    return "\n".join(parts) + "\n"


ROUND2_CHANGES = """The changes of this round, each measured before and after in one run (file store, 1,000 x 30 s):

- **Token requests over aiohttp** (`syncd/oauth/transport.py`): `build_http_client` gives httpx an
  `AiohttpTransport`, so `mint` keeps httpx's API and every rule that lives in httpx and `oauth` (no redirects,
  the body cap read chunk by chunk, the `mint_timeout` deadline, redaction, content decoding, proxies from the
  environment on httpx's own transports), while httpcore's pool and anyio's cancel scopes are gone from the
  path. In-process, same fake IdP: ~750 µs of CPU per `mint` instead of ~1,280 µs.
- **A reschedule moves a job** (`syncd/schedule/`): each credential keeps one APScheduler job for its whole
  life (parked a year ahead once it fired, moved by `next_run_time` when the run arms the next one): no new
  `Job`, no `inspect.signature` check, no replace. The read-back jobs do the same. `LoopScheduler` wakes itself
  with one coalesced `call_soon` from the loop's own thread instead of `call_soon_threadsafe` (a self-pipe
  write and read) per re-arm.
- **File store paths** are checked once per key (`FileStore.path_for`).
- **A read-back job that finds nothing due no longer re-fires at once.** A target whose read-back time had
  passed while it did not hold the held token (or the token had expired) re-armed its job at that past time,
  so the job fired again on the next loop turn, forever: at 100,000 credentials this kept the loop busy
  through the whole start-up. It now waits at least `MIN_VERIFY_GAP`.

- **Per-credential memory** (measured by `python -m bench.memory`, heap per credential by component at 10,000
  credentials, and resident-set growth with `--rss` at 100,000): slots on `CredentialState`, `TargetState` and
  `TokenPayload`; each metric series keeps its own rendered line (no per-family line dict, no 1-tuples); a
  target's label part built once; credentials with one refresh policy share its frozen record; token URLs
  and store names interned; config sections given the same keys share pydantic's set of given keys (a
  frozen section never adds to it). Heap at 10,000: 12.6 KiB per credential before, 8.3 KiB after (config
  3.1 → 1.9, engine state 3.1 → 0.9, series 3.8 → 2.9, jobs 1.5, token 1.2). In-process at 100,000: RSS
  1,399 → 941 MiB.
- **Start-up** (measured by `python -m bench.startup`, each step's wall and CPU): a credential's jobs after
  the first are copies of a job APScheduler validated (`schedule.add_copy`: `inspect.signature` of the same
  function was most of each add; 20,000 adds 3.1 to 3.7 s → ~1.0 s); the Vault store reads at start-up with
  KV GETs over aiohttp on the loop (`stores/vault/bulk.py`, `VaultStore.read_many`; anything but a 200 or a
  plain 404 is read again through hvac, so errors, the log-in again and redaction stay that path's), about
  a fifth of the CPU of an hvac read; judging and scheduling yield to the loop every 256 credentials, so
  `/livez` answers during a long start-up. 10,000 fresh tokens, 0 mints, on a loaded machine: file 15.9 →
  11.8 s, OpenBao 48.1 → 22.3 s from spawn to `started` (`Engine.start` CPU: 7.9 → 5.8 s and 29.4 → 9.0 s).
  Then: start-up's jobs are added in batches (`schedule.add_copies`: one merge into the job store's sorted
  list and one wake-up per batch; the read-backs the adoption plans when it ends, the runs every 256
  credentials); the config is parsed with tomli's compiled build (the same parser as tomllib: ~1.1 → ~0.25 s
  at 10,000 credentials) and a refresh policy is made once per distinct set of values; the garbage collector
  is held off during the config load, set-up and adoption (`syncd/heap.py`: its full collections walked every
  long-lived object, ~0.9 s of CPU for nothing found). Measured the same day on the same machine (load 1 to
  6): file 9.4 → 5.6 and 6.7 s from spawn to `started` in two runs (in-process 8.9 → 5.2 s wall, 8.5 → 5.1 s
  CPU; alternating spawns of the old and new code on one seeded store: 8.0 / 8.4 s → 6.0 / 6.6 s), OpenBao
  19.3 → 18.7 and 14.8 s: there the 10,000 KV GETs are most of it (in-process reads 4.8 s of syncd's CPU,
  ~0.4 ms per GET inside aiohttp, while the OpenBao server needs the same two cores). 0 mints in every run.
- **A mint goes straight to aiohttp** (`syncd/oauth/direct.py`): for a client built by `build_http_client`, when
  httpx itself would route the URL to `AiohttpTransport` (no proxy, auth, hooks or cookies), `mint` sends the
  request httpx would build (same headers in httpx's order, same form bytes, the client's timeouts, no
  redirects) through the transport's aiohttp session and reads the capped body itself; failures are the same
  httpx exceptions, classified in one place. Every outcome is table-tested against the httpx path on a local
  server. CPU per mint in-process (`python -m bench.mint_cost`, fake IdP in its own process): ~900 → ~590 µs;
  a bare aiohttp POST costs ~380-490 µs in the same runs. Two bugs found on the way: with our transport given,
  httpx no longer mounted `HTTPS_PROXY` / `NO_PROXY` (token requests went direct despite the docs), and a
  non-ASCII response header made `mint` raise `UnicodeEncodeError`; both fixed.
- **A scrape is written in parts** (`syncd/server.py`, `syncd/exposition.py`): each series keeps its line as
  bytes, a family yields 1,024 series per part, and the page goes out part by part with a Content-Length (never
  joined into one 9 MB body), the loop getting a turn every 2 ms of render or write. In-process at 10,000
  credentials (`python -m bench.scrape_cost`, scraped from another process while 67 rotations/s update the
  series): wall per scrape median 39-70 → 31-45 ms, longest loop stall 41-72 → 11-16 ms, server CPU per scrape
  ~36 → 24-27 ms. gzip was measured and left out (level 1 costs ~26 ms of CPU for the page).
- **Start-up's state is frozen out of later collections** (`gc.freeze()` after `started`, again after a reload
  that collected once): at 10,000 credentials a full collection walked ~400,000 objects with the loop held,
  273-336 ms about every 75 s at 67 rotations/s, a longer stall than any scrape; frozen, 16-47 ms.
- **A failed read-back is retried once per rotation** (`verify.next_after_failure`): with `auto`, a store that
  stays unreachable got a read attempt at every halving of the remaining gap (up to ~11 per rotation of a
  20-minute token); now the check and one retry.
- **The mint's hot path**: each token URL is parsed once (origin, display form, httpx URL), a client secret
  already registered with the redactor is not registered again, secrets made of unreserved characters skip
  the quoting pass (their encoded spellings are themselves), one pending target write is awaited without a
  task. In-process rotation CPU ~2.5 → ~1.85 ms; in the whole daemon within noise.

- **100,000 credentials reach a steady state** (it used to collapse into a mint failure storm after start-up:
  159,163 failed mints in 6 minutes, 0 successes after the first 2,289). What was changed, each on its own
  run of the 100,000 case: waiting mints get their token endpoint's slots most urgent first
  (`engine/admission.py`: no valid token, then the nearest refresh deadline) instead of first come; a mint
  whose held token is still valid waits for its slot until `mint_timeout` before that token's refresh
  deadline (`decide.slot_patience`) instead of failing at `mint_timeout` and coming back, which had made the
  backlog a retry storm (goodput fell from ~130 to ~1 mint/s); the watchdog leaves a run whose job fired
  but which the loop has not started alone for 60 s (it re-armed tens of thousands); a start-up adoption
  counts as the rotation's read-back (every adopted credential read its targets again within half a
  refresh interval, twice the rotations' own reads, in threads competing for the GIL). With those: 0 failed
  mints, ~167 rotations/s, 0 expired reads. Then, from py-spy profiles of that steady state: the watchdog
  checks a fifth of the credentials per second, read from the live dict (a whole pass per second was 15% of
  a core, and its copy of 100,000 pairs set off full collections worth another 11%); runs and read-backs keep
  their jobs in job stores of their own (a job move copies the store's list after the point: ~86 µs at
  200,000 jobs, ~45 µs at 100,000).
- **What a rotation cycle at 100,000 credentials showed, and what changed** (each on its own 20-minute run
  of the 100,000 case: one whole cycle of its tokens). The loop stalled for over a second 23 times in 20
  minutes (lateness p99 1.2 s): every automatic full collection walked all the objects made since start-up,
  and each rotation replaces a credential's token, payload and records, so by the end of a cycle that was
  another copy of the per-credential state. Now what survives each full collection is frozen too
  (`syncd/heap.py`, a `gc` callback), and every 6 hours the whole heap is thawed, collected once and frozen
  again (`heap_reclaimed`), so that a dead reference cycle among frozen objects is not kept: at 100,000
  credentials that walk held the loop 3.1 s and found 60 dead objects after 10 minutes. The garbage
  collector then costs ~1-4% of a core (gen 0, 1 and 2 timed each minute by a probe), and over the cycle
  the lateness p99 fell from 1.2 s to 196 ms, the longest under a second. The heartbeat job takes unbounded
  instances like the credentials' jobs, so a stall right after a beat no longer skips the next one with
  APScheduler's warning. The redactor keeps hashes of the
  values it looks for, not the values, so a replaced token (kept redacted until it expires, about one per
  credential) costs a few bytes instead of ~1 KB. The CPU per rotation that rose over the window is the
  read-backs phasing in (see the section on this case).
- **A series is its rendered line, and a scrape never holds the page** (`syncd/exposition.py`,
  `syncd/server.py`). A family keeps one bytes line per label set and nothing else: no object and no float
  per series (the value is read back from the line, which the text format writes from `repr`'s digits), and
  no sample name (the same on every line of a family: the scrape's join puts it back as the separator).
  Heap of the per-credential series at 10,000 one-target credentials: 2.73 → 1.81 KiB per credential. A
  scrape first takes each family's lines (a pointer per series) and renders the few other collectors, so
  a failing collector is still a 500 before anything is sent and Content-Length is still known, then
  renders and writes the page ~100 KB at a time: at 100,000 credentials the 92 MB page no longer sets the
  peak RSS. A config's token URL is parsed once per distinct URL (loading 10,000 credentials that name one
  endpoint: ~1.07 → ~0.6 s).
- **A credential's configuration is a frozen record** (`syncd/config/`): the credential, its targets and its
  secret references are pydantic dataclasses with slots, validated like every other section (the same
  errors at the same key paths) but holding no per-instance dict and no set of given keys (so the sharing
  of those sets above is gone with the models it served); the scheduler's job copies share their
  template's empty `kwargs`. Heap at 10,000: config 1.86 → 0.84 KiB per credential,
  jobs 1.09 → 0.96, total 6.64 → 5.49 KiB.
- **Read-backs due together are read together** (`syncd/schedule/sweep.py`, `syncd/engine/readback.py`). Each
  credential's read-back had a job of its own, and each read cost a job firing, a move of that job and, for
  the file store and hvac, a thread hop: about as much CPU as the read. Now the planned read-backs are a heap
  behind one job that fires at the earliest, at most every 0.25 s, and everything due then is read by store in
  batches (`read_many`: many files in one thread hop, Vault's GETs from the event loop instead of hvac in
  threads; the AWS stores' own checks go target by target). Measured on this code against the previous
  runs (each case once, a quiet machine): 100,000 x 20 min 0.767 → 0.655 core (4.61 → 3.93 ms per rotation;
  the last sixth, where every rotation carries its read-back, 4.99 → 4.12 ms) and RSS 872 → 851 MB; 1,000 x
  30 s 0.324 → 0.271 core; 100 x 3 s 0.306 → 0.255; OpenBao 10.47 → 7.94 ms per rotation, SSM 10.5 → 9.5,
  Secrets Manager 9.19 → 8.42. Heap at 10,000: scheduler 0.96 → 0.56 KiB per credential, total 5.49 → 5.09
  KiB. A read-back is now up to 0.25 s later than planned (planned half a refresh interval after its write).
- **The file store's start-up reads go one thread at a time** (`syncd/stores/batch.py`, `reads_serially`).
  Batches of 20 files with 64 reads allowed kept three worker threads reading at once, and on local files
  threads only contend for the GIL: 10,000 files took 1.4-1.9 s in-process. Now 500 files go per thread hop,
  one hop at a time (a batch larger than `startup_concurrency` holds every permit): 0.6-0.7 s. The spawned
  10,000-credential start-up: 6.4 → 5.5 s (adoption 4.1 → 3.0 s). OpenBao's start-up reads were already
  aiohttp GETs from the loop and did not change; it measured 14.1 → 11.6 s, which is the machine.
- **A Vault rotation's write goes from the event loop** (`syncd/stores/vault/aio.py`). Both requests of a
  rotation (the data with `cas`, then the path's metadata) went through hvac and `requests` in the store's
  threads, about 1.5 ms of CPU each. When the write is the plain case (the path's version known from the last
  write or read, the mount checked) the store now sends the same two requests with aiohttp from the loop, and
  records the same state from their answers; any other answer (a conflict, a denial, an error, not Vault's,
  over 1 MB, slower than `timeout`) hands the write to the hvac path, which alone resolves conflicts, logs in
  again and words errors, and which knows a data request that landed (it finishes only the metadata). OpenBao,
  1,000 x 30 s: 7.94 → 4.54 ms per rotation (0.527 → 0.302 core). Its "floor (syncd's mint + write)" loop
  calls the same store write, so it fell too (6.64 → 1.90 ms), and syncd / that floor rose from 1.20x to 2.39x:
  the floor now measures syncd's cheaper write, not hvac's.
- **Start-up** (`syncd/exposition.py`, `syncd/stores/file/plan.py`): a sample value is written by
  `value_bytes`, floatToGoString's output (table-tested against it) in about two thirds of its time (four of a
  credential's gauges are timestamps, its slowest path); the file store's per-target start-up check walks
  strings, not `pathlib` paths (10,000 targets: 0.33 → 0.26 s of CPU). The harness now starts the
  10,000-credential case three times on the same stored tokens and takes the median (one start-up here varies
  10-20% from one minute to the next): file 5.8, 4.7 and 4.7 s (was one start-up, 5.5 s), OpenBao 10.7, 11.8
  and 11.1 s.
- **uvloop was measured and left out**: the 1,000 x 30 s case used more CPU with it (4.80 and 5.22 ms per
  rotation against 4.51 and 4.44 on asyncio's loop, alternated), and in-process `mint` cost the same.

Not done: the merged rotation log event (the two info events cost ~0.5% of a rotation, ~30 µs; the harness,
a dozen test files and operations.md read `mint` and `write` as they are).
"""


def round2_section(results: dict[str, Any]) -> str:
    main = rp.main_case(results)
    parts = ["## Performance round 2: a cheaper core\n", ROUND2_CHANGES]
    meta = results.get("meta") or {}
    loads = [
        x
        for part in meta.get("parts", [meta])
        for x in [*(part.get("load_avg_start") or [])[:1], *(part.get("load_avg_end") or [])[:1]]
    ]
    if meta.get("note"):
        parts.append(f"**Note on this run:** {meta['note']}\n")
    if loads and meta.get("cpus") and max(loads) > meta["cpus"]:
        parts.append(
            f"**This run is not a clean measurement:** the load average was {' → '.join(f'{x:.1f}' for x in loads)} "
            f"on {meta['cpus']} cores (other test runs on the shared machine), so every absolute CPU and lateness "
            "figure below is inflated and the cases that fell behind (rotations/s under target, failed mints, "
            "expired reads) say more about the machine than about syncd. Compare ratios within one store.\n"
        )
    rows = []
    for store in ("file", "openbao", "moto-ssm", "moto-secretsmanager"):
        case = main if store == "file" else rp._active(results, store)
        floor = rp._get(results, "stores", store, "floor", "cpu_per_rotation_ms")
        bare = rp._get(results, "stores", store, "bare_floor", "cpu_per_rotation_ms")
        cpr = rp._get(case, "cpu_per_rotation_ms")
        if cpr is None and floor is None and bare is None:
            continue
        rows.append(
            [
                store,
                rp.f(cpr, 2),
                rp.f(floor, 2),
                rp.f(bare, 2),
                rp.f(rp._ratio(cpr, floor), 2, "x"),
                rp.f(rp._ratio(cpr, bare), 2, "x"),
            ]
        )
    if rows:
        parts += [
            "CPU ms per rotation in this run, syncd against both floors (target: syncd <= 1.3 x the bare floor):\n",
            rp.table(
                [
                    "store",
                    "syncd",
                    "floor (syncd's mint + write)",
                    "bare aiohttp floor",
                    "syncd / floor",
                    "syncd / bare",
                ],
                rows,
            ),
            "",
        ]
    prof = rp._get(main, "profile") or {}
    if prof.get("categories"):
        top = ", ".join(f"{k} {v:.0f}%" for k, v in prof["categories"][:6])
        parts.append(
            f"Where syncd's Python CPU goes now (py-spy on the 1,000 x 30 s daemon, see below): {top}. The event "
            "loop and the thread hand-off are the price of handling each rotation on its own (the paced floor pays "
            "it too); what is left of APScheduler is its firing path (`_process_jobs`, executor submit, events).\n"
        )
    return "\n".join(parts) + "\n"
