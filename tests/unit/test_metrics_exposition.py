"""The pre-rendered exposition (syncd.exposition) says exactly what prometheus_client would.

The same sequence of updates is applied to syncd's Metrics and to a registry built the way
it was before, of prometheus_client's own Gauge and Counter with the same names, help
and labels (the histograms and other collectors are the same objects in both). The texts
must be identical, and parse to the same families with prometheus_client's own parser.
"""

from __future__ import annotations

import contextlib
import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from syncd.exposition import LabelledCounter, LabelledGauge
from syncd.metrics import Metrics

# Label values as operators write them, and ones the text format must escape.
NAMES = ["calm", "card-2", 'quo"te', "back\\slash", "new\nline", "sp ace", "ünï"]
OUTCOMES = ("ok", "transient", "fatal")
VALUES = [0.0, 1.0, 3.0, 0.5, 1e-7, 1_764_585_000.123, 1e21, 123456.0, 1234567.0, -2.5, math.inf, -math.inf]


class Both:
    """Syncd's Metrics and the prometheus_client registry it replaced, updated alike."""

    def __init__(self) -> None:
        self.new = Metrics()
        self.old = CollectorRegistry()
        self.mirror: dict[str, Gauge | Counter] = {}
        for part in self.new.registry.in_order():
            if isinstance(part, LabelledGauge | LabelledCounter):
                kind = Gauge if isinstance(part, LabelledGauge) else Counter
                self.mirror[part.name] = kind(part.name, part.documentation, list(part.labelnames), registry=self.old)
            else:
                self.old.register(part)  # the very same histogram, counter or collector

    def family(self, attr: str) -> tuple[LabelledGauge | LabelledCounter, Gauge | Counter]:
        fam = getattr(self.new, attr)
        return fam, self.mirror[fam.name]

    def set(self, attr: str, value: float, **labels: str) -> None:
        for fam in self.family(attr):
            fam.labels(**labels).set(value)

    def inc(self, attr: str, amount: float = 1.0, **labels: str) -> None:
        for fam in self.family(attr):
            fam.labels(**labels).inc(amount)

    def init_credential(self, name: str, targets: list[str]) -> None:
        self.new.init_credential(name, targets)
        for outcome in OUTCOMES:
            self.mirror["syncd_mints"].labels(credential=name, outcome=outcome)
            for target in targets:
                self.mirror["syncd_writes"].labels(credential=name, target=target, outcome=outcome)
        self.mirror["syncd_consecutive_failures"].labels(credential=name)

    def forget_credential(self, name: str, targets: list[str]) -> None:
        self.new.forget_credential(name, targets)
        m = self.mirror
        removals: list[tuple[str, tuple[str, ...]]] = [
            *(
                (fam, (name,))
                for fam in ("syncd_token_expiry_timestamp_seconds", "syncd_next_refresh_timestamp_seconds")
            ),
            *((fam, (name,)) for fam in ("syncd_consecutive_failures", "syncd_token_lifetime_seconds")),
            *(("syncd_mints", (name, outcome)) for outcome in OUTCOMES),
        ]
        for target in targets:
            removals.append(("syncd_target_token_expiry_timestamp_seconds", (name, target)))
            removals.append(("syncd_target_last_success_timestamp_seconds", (name, target)))
            removals.extend(("syncd_writes", (name, target, outcome)) for outcome in OUTCOMES)
        for fam, labels in removals:
            with contextlib.suppress(KeyError):
                m[fam].remove(*labels)

    def texts(self) -> tuple[str, str]:
        """Both expositions, without the process_* series (their values move between two reads)."""

        def keep(text: str) -> str:
            return "".join(line for line in text.splitlines(keepends=True) if "process_" not in line)

        return keep(self.new.render().decode()), keep(generate_latest(self.old).decode())


def run_a_fleet(both: Both) -> None:
    for i, name in enumerate(NAMES):
        targets = [f"local:{name}.json"] + ([f"vault:kv/{name}"] if i % 2 else [])
        both.init_credential(name, targets)
        for j, value in enumerate(VALUES):
            both.set("token_expiry", value, credential=name)
            both.set("next_refresh", value + j, credential=name)
            both.set("consecutive_failures", j % 3, credential=name)
            both.set("token_lifetime", 300.0, credential=name)
            for target in targets:
                both.set("target_token_expiry", value, credential=name, target=target)
                both.set("target_last_success", abs(value) / 2, credential=name, target=target)
                both.inc("writes", credential=name, target=target, outcome=OUTCOMES[j % 3])
            both.inc("mints", 0.5 if j % 2 else 1, credential=name, outcome="ok")
        both.new.mint_duration.observe(0.01 * i)
        both.new.write_duration.labels(store="local").observe(0.002)
        both.new.schedule_lateness.observe(0.001)


def test_the_exposition_is_what_prometheus_client_renders_for_the_same_updates():
    both = Both()
    run_a_fleet(both)
    new, old = both.texts()
    assert new == old
    parsed_new = list(text_string_to_metric_families(new))
    parsed_old = list(text_string_to_metric_families(old))
    assert [f.name for f in parsed_new] == [f.name for f in parsed_old]
    for a, b in zip(parsed_new, parsed_old, strict=True):
        assert (a.type, a.documentation) == (b.type, b.documentation), a.name
        assert [(s.name, s.labels, s.value) for s in a.samples] == [(s.name, s.labels, s.value) for s in b.samples]
    assert {s.labels["credential"] for s in next(f for f in parsed_new if f.name == "syncd_mints").samples} == set(
        NAMES
    )


def test_a_family_in_many_parts_is_the_same_text(monkeypatch):
    """A scrape takes a family a run of series at a time: the parts add up to the same exposition."""
    from syncd import exposition

    both = Both()
    run_a_fleet(both)
    whole, old = both.texts()
    monkeypatch.setattr(exposition, "PART_SERIES", 2)
    in_parts, _ = both.texts()
    assert in_parts == whole == old
    parts = list(both.new.writes.parts())
    assert len(parts) > 3 and parts[0].startswith(b"# HELP syncd_writes_total ")
    assert all(p.count(b"\n") == 2 for p in parts[1:-1]), "two series a part, the header only in the first"
    assert b"".join(parts).decode() == both.new.writes.text()


def test_an_empty_family_is_its_header_as_prometheus_client_writes_it():
    both = Both()
    new, old = both.texts()
    assert new == old and "# TYPE syncd_writes_total counter\n" in new


def test_a_removed_credential_disappears_and_one_started_again_comes_back_at_zero():
    both = Both()
    run_a_fleet(both)
    gone = 'quo"te'
    both.forget_credential(gone, [f"local:{gone}.json", f"vault:kv/{gone}"])
    new, old = both.texts()
    assert new == old
    for fam in text_string_to_metric_families(new):
        assert all(s.labels.get("credential") != gone for s in fam.samples), fam.name
    assert 'credential="quo\\"te"' not in new
    # the others keep every series
    assert new.count('credential="calm"') == old.count('credential="calm"') > 0
    # started again: its counters are back at 0 (a new series), exactly as prometheus_client does it
    both.init_credential(gone, [f"local:{gone}.json"])
    both.inc("mints", credential=gone, outcome="fatal")
    new, old = both.texts()
    assert new == old
    assert 'syncd_mints_total{credential="quo\\"te",outcome="fatal"} 1.0' in new


def test_registry_readers_see_the_same_samples():
    """tests and tools read the registry (collect(), get_sample_value) as before."""
    both = Both()
    run_a_fleet(both)
    assert both.new.registry.get_sample_value(
        "syncd_mints_total", {"credential": "calm", "outcome": "ok"}
    ) == both.old.get_sample_value("syncd_mints_total", {"credential": "calm", "outcome": "ok"})
    (metric,) = both.new.writes.collect()
    (mirrored,) = both.mirror["syncd_writes"].collect()
    assert metric.samples == mirrored.samples and metric.type == mirrored.type == "counter"


def test_labels_are_checked_like_prometheus_client_does():
    m = Metrics()
    with pytest.raises(ValueError):
        m.mints.labels(credential="calm")
    with pytest.raises(ValueError):
        m.mints.labels(credential="calm", target="x")
    with pytest.raises(ValueError):
        m.mints.labels("calm")
    with pytest.raises(ValueError):
        m.mints.labels(credential="calm", outcome="ok").inc(-1)
    with pytest.raises(KeyError):
        m.mints.remove("never", "ok")


@pytest.mark.parametrize(
    "value",
    [
        0.0,
        -0.0,
        1.0,
        0.1,
        3600.0,
        1_700_000_000.123,
        12_345_678.0,
        1e22,
        5e-324,
        -2.5e-7,
        2**53 + 1.0,
        math.inf,
        -math.inf,
    ],
)
def test_a_value_is_kept_only_in_its_line_and_read_back_exactly(value):
    """No float is kept beside the line: what ``inc`` and ``collect`` read is parsed from it, and
    the text format's rendering (``repr``'s digits) loses nothing."""
    m = Metrics()
    m.token_expiry.labels("calm").set(value)
    assert m.token_expiry.labels("calm").value == value
    (metric,) = m.token_expiry.collect()
    assert metric.samples[0].value == value
    m.consecutive_failures.labels("calm").set(value if math.isfinite(value) else 0.0)
    m.consecutive_failures.labels("calm").inc(0.5)
    assert m.consecutive_failures.labels("calm").value == (value if math.isfinite(value) else 0.0) + 0.5


def test_nan_survives_the_round_trip():
    m = Metrics()
    m.token_expiry.labels("calm").set(math.nan)
    assert math.isnan(m.token_expiry.labels("calm").value)
    assert 'syncd_token_expiry_timestamp_seconds{credential="calm"} NaN\n' in m.render().decode()


def test_a_series_handle_kept_past_a_removal_brings_no_ghost_back():
    """A reload removes a credential's series while a run still holds its handle: the late
    update must not put the removed series back into the exposition."""
    m = Metrics()
    m.init_credential("gone", ["local:gone.json"])
    held = m.mints.labels("gone", "ok")
    gauge = m.token_expiry.labels("gone")
    m.forget_credential("gone", ["local:gone.json"])
    held.inc()
    gauge.set(42.0)
    assert b'credential="gone"' not in m.render()
    assert held.value == 0.0


# Where floatToGoString's branches meet: Go's exponent from 7 integer digits on (timestamps),
# trailing zeros and the dot stripped from the mantissa, the signs, infinities and NaN.
GO_FLOATS = [
    *VALUES,
    -0.0,
    math.nan,
    5e-324,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    999_999.9999,
    1_000_000.0,
    10_000_000.0,
    1_764_585_000.0,
    1_764_585_000.5,
    12_345_678_901.25,
    1e16,
    0.1 + 0.2,
    -1_764_585_000.123,
]


@pytest.mark.parametrize("value", GO_FLOATS, ids=repr)
def test_a_value_is_written_as_generate_latest_writes_it(value: float) -> None:
    from prometheus_client.utils import floatToGoString

    from syncd.exposition import value_bytes

    assert value_bytes(value) == floatToGoString(value).encode()


def test_random_values_are_written_as_generate_latest_writes_them() -> None:
    """A seeded sweep over magnitudes and signs, beyond the table's hand-picked edges."""
    import random

    from prometheus_client.utils import floatToGoString

    from syncd.exposition import value_bytes

    rng = random.Random(16)
    values = [rng.uniform(-1e12, 1e12) for _ in range(3000)] + [10 ** rng.uniform(-30, 30) for _ in range(3000)]
    values += [float(rng.randint(0, 10**13)) for _ in range(1000)]
    assert [v for v in values if value_bytes(v) != floatToGoString(v).encode()] == []
