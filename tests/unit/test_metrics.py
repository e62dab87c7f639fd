"""The Prometheus series of docs/design.md "Metrics" (names listed in docs/operations.md): names, types, labels, life cycle of a credential's series."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from syncd import __version__
from syncd.metrics import CONTENT_TYPE, Metrics

# docs/design.md "Metrics" (names listed in docs/operations.md): family name (as the text parser reports it) -> (type, label names)
DESIGN_METRICS: dict[str, tuple[str, set[str]]] = {
    "syncd_token_expiry_timestamp_seconds": ("gauge", {"credential"}),
    "syncd_target_token_expiry_timestamp_seconds": ("gauge", {"credential", "target"}),
    "syncd_target_last_success_timestamp_seconds": ("gauge", {"credential", "target"}),
    "syncd_next_refresh_timestamp_seconds": ("gauge", {"credential"}),
    "syncd_consecutive_failures": ("gauge", {"credential"}),
    "syncd_mints": ("counter", {"credential", "outcome"}),  # exposed as syncd_mints_total
    "syncd_writes": ("counter", {"credential", "target", "outcome"}),  # syncd_writes_total
    "syncd_mint_duration_seconds": ("histogram", set()),
    "syncd_write_duration_seconds": ("histogram", {"store"}),
    "syncd_schedule_lateness_seconds": ("histogram", set()),
    "syncd_schedule_rearmed": ("counter", set()),  # syncd_schedule_rearmed_total
    "syncd_build_info": ("gauge", {"version"}),
}


def families(m: Metrics):
    return {f.name: f for f in text_string_to_metric_families(m.render().decode())}


def populated() -> Metrics:
    m = Metrics()
    m.init_credential("calm", ["local:calm.json", "vault:vgs/calm"])
    m.token_expiry.labels(credential="calm").set(1000.0)
    m.target_token_expiry.labels(credential="calm", target="local:calm.json").set(1000.0)
    m.target_last_success.labels(credential="calm", target="local:calm.json").set(900.0)
    m.next_refresh.labels(credential="calm").set(950.0)
    m.mints.labels(credential="calm", outcome="ok").inc()
    m.writes.labels(credential="calm", target="local:calm.json", outcome="ok").inc()
    m.mint_duration.observe(0.05)
    m.write_duration.labels(store="local").observe(0.01)
    m.schedule_lateness.observe(0.002)
    return m


def test_every_design_metric_with_its_type_and_labels():
    fams = families(populated())
    for name, (kind, labels) in DESIGN_METRICS.items():
        assert name in fams, f"{name} missing from /metrics"
        fam = fams[name]
        assert fam.type == kind, f"{name} is a {fam.type}, docs/operations.md says {kind}"
        for sample in fam.samples:
            got = set(sample.labels) - {"le"}
            assert got == labels, f"{sample.name} has labels {got}, docs/operations.md says {labels}"
    # the exposed sample names operators query
    names = {s.name for f in fams.values() for s in f.samples}
    assert {"syncd_mints_total", "syncd_writes_total", "syncd_mint_duration_seconds_bucket"} <= names


def test_histograms_never_carry_a_credential_label():
    m = populated()
    for i in range(50):
        m.init_credential(f"cred{i}", [f"local:cred{i}.json"])
    histograms = [fam for fam in families(m).values() if fam.type == "histogram"]
    assert histograms, "no histogram to check"
    for fam in histograms:
        assert all("credential" not in s.labels for s in fam.samples), fam.name
        # a fleet of credentials does not multiply the bucket series
        assert len(fam.samples) < 60, fam.name


def test_init_credential_exposes_every_outcome_at_zero():
    """The first failure must be an increase from 0, or increase()/rate() alerts miss it."""
    m = Metrics()
    m.init_credential("calm", ["local:calm.json"])
    fams = families(m)
    mints = {s.labels["outcome"]: s.value for s in fams["syncd_mints"].samples if s.name == "syncd_mints_total"}
    writes = {s.labels["outcome"]: s.value for s in fams["syncd_writes"].samples if s.name == "syncd_writes_total"}
    assert mints == {"ok": 0.0, "transient": 0.0, "fatal": 0.0}
    assert writes == {"ok": 0.0, "transient": 0.0, "fatal": 0.0}
    assert [s.value for s in fams["syncd_consecutive_failures"].samples] == [0.0]


def test_forget_credential_removes_every_series_of_it_and_nothing_else():
    m = populated()
    m.init_credential("card", ["local:card.json"])
    m.token_expiry.labels(credential="card").set(5.0)
    m.token_lifetime.labels(credential="calm").set(300.0)
    m.forget_credential("calm", ["local:calm.json", "vault:vgs/calm"])
    for fam in families(m).values():
        for s in fam.samples:
            assert s.labels.get("credential") != "calm", f"ghost series {s.name}{s.labels}"
    fams = families(m)
    assert any(s.labels.get("credential") == "card" for s in fams["syncd_mints"].samples)
    # histograms keep their history (they have no credential label to forget)
    assert fams["syncd_mint_duration_seconds"].samples
    # forgetting twice, or a credential never seen, is harmless
    m.forget_credential("calm", ["local:calm.json"])
    m.forget_credential("never", [])


def test_build_info_and_content_type():
    fams = families(Metrics())
    (sample,) = fams["syncd_build_info"].samples
    assert sample.labels == {"version": __version__} and sample.value == 1.0
    assert CONTENT_TYPE.startswith("text/plain")


def test_each_engine_has_its_own_registry():
    a, b = Metrics(), Metrics()
    a.mints.labels(credential="calm", outcome="ok").inc()
    assert "calm" not in b.render().decode()
