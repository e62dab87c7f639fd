"""Labelled gauges and counters that keep their text exposition rendered, one line per series.

prometheus_client renders every series again at every scrape: at 10,000 credentials that is
~110,000 lines and about a second of CPU, during which the event loop (the GIL) barely runs.
The per-credential series here keep their line of the Prometheus text format ready instead,
as bytes (what goes on the wire: no encoding at scrape time), rebuilt when their value changes
(a few times per rotation, about a microsecond each), so a scrape only joins bytes that already
exist, a bounded run of series at a time (``parts``), so a caller can let the loop run between.

The families offer the part of prometheus_client's surface syncd uses
(``labels(...).set()/inc()``, ``remove()``, ``collect()``) and register in a
``CollectorRegistry`` like its own metrics, so anything that reads the registry
(``generate_latest``, ``registry.collect()``) sees the same samples. Series are updated and
rendered from the event loop's thread only, so they carry no lock.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

__all__ = ["PART_SERIES", "LabelledCounter", "LabelledGauge", "Snapshot", "value_bytes"]

#: Series per part of a family's exposition: a part is one join of about 100 KB (well under a
#: millisecond), so a scrape can hand the loop back between parts of a 30,000-series family.
PART_SERIES = 1024


def _escape_label_value(value: str) -> str:
    # The text format's escaping of label values (what generate_latest does). Names, targets and
    # outcomes almost never hold one of the three: looking is cheaper than three replaces.
    if "\\" not in value and "\n" not in value and '"' not in value:
        return value
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


#: What floatToGoString appends to a mantissa whose integer part had ``dot`` digits.
_EXPONENTS = tuple(f"e+{dot - 1:02d}".encode() for dot in range(400))


def value_bytes(value: float) -> bytes:
    """``floatToGoString(value).encode()``, as generate_latest writes a sample value (table-tested
    against it), in about two thirds of its time: four of a rotation's gauge updates are timestamps,
    which take its slowest path (Go writes exponents sooner than Python)."""
    text = repr(value)
    if value > 0:
        dot = text.find(".")
        if dot > 6:
            mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
            return mantissa.encode() + _EXPONENTS[dot]
        if value == math.inf:
            return b"+Inf"
    elif value != value:  # noqa: PLR0124  (NaN is the only value unequal to itself)
        return b"NaN"
    elif value == -math.inf:
        return b"-Inf"
    return text.encode()


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


class _Series:
    """A handle on one label set's line (what ``labels()`` returns, made at each call).

    The family keeps only the rendered line per label set: at 100,000 credentials there are
    over a million series, and an object and a float each would be ~70 MB more. The value is
    the line's last field, which ``floatToGoString`` writes from ``repr`` (no digit lost), so it
    is read back from there. A handle kept past ``remove()`` changes nothing: no ghost series.
    """

    __slots__ = ("_key", "_lines")

    def __init__(self, lines: dict[Key, bytes], key: Key) -> None:
        self._lines = lines
        self._key = key

    @property
    def value(self) -> float:
        line = self._lines.get(self._key)
        return 0.0 if line is None else _value_of(line)

    def _store(self, value: float) -> None:
        line = self._lines.get(self._key)
        if line is None:
            return  # removed since this handle was made
        self._lines[self._key] = line[: line.rindex(b" ") + 1] + value_bytes(value) + b"\n"


def _value_of(line: bytes) -> float:
    # The value is the line's last field: labels may hold spaces, a value never does.
    return float(line[line.rindex(b" ") + 1 :])


class _GaugeSeries(_Series):
    __slots__ = ()

    def set(self, value: float) -> None:
        self._store(float(value))

    def inc(self, amount: float = 1.0) -> None:
        self._store(self.value + amount)


class _CounterSeries(_Series):
    __slots__ = ()

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self._store(self.value + amount)


#: A series' label values: the value itself for a family with one label (a 1-tuple per series
#: would cost 64 bytes for nothing), else the tuple of values in the family's label order.
Key = str | tuple[str, ...]


class Snapshot:
    """A family's exposition taken at one moment, written part by part: its length is known before
    any part is rendered, so a scrape can send Content-Length and never hold the whole page."""

    __slots__ = ("_header", "_lines", "_name", "length")

    def __init__(self, header: bytes, name: bytes, lines: list[bytes]) -> None:
        self._header, self._name, self._lines = header, name, lines
        # Each line is kept without the sample name, which the join puts back before every line.
        self.length = len(header) + len(name) * len(lines) + sum(map(len, lines))

    def parts(self, size: int | None = None) -> Iterator[bytes]:
        """The exposition (UTF-8) in parts of ``size`` series (``PART_SERIES``), the first with the header."""
        size = size or PART_SERIES
        name, lines = self._name, self._lines
        yield self._header + (name + name.join(lines[:size]) if lines else b"")
        for start in range(size, len(lines), size):
            yield name + name.join(lines[start : start + size])


S = TypeVar("S", bound=_Series)


class _Family(Generic[S]):
    """A metric family with labels; one pre-rendered line per label set, in creation order."""

    kind = ""
    _series_type: type[S]

    def __init__(self, name: str, documentation: str, labelnames: list[str], registry: CollectorRegistry) -> None:
        if not labelnames:
            raise ValueError(f"{name}: a family without labels belongs to prometheus_client")
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._sample_name = name + "_total" if self.kind == "counter" else name
        # generate_latest writes labels sorted by name: keep that order in the line. A series' prefix
        # is this template filled with its escaped label values (names never hold a '%').
        self._label_order = tuple(sorted(range(len(self.labelnames)), key=lambda i: self.labelnames[i]))
        pairs = ",".join(f'{self.labelnames[i]}="%s"' for i in self._label_order)
        self._template = f"{{{pairs}}} "
        # A line is kept without the sample name, which is the same on every line of the family
        # (~40 bytes a series, ~50 MB at 100,000 credentials): ``parts`` joins the lines with it.
        self._name_bytes = self._sample_name.encode()
        self._header = (
            f"# HELP {self._sample_name} {_escape_help(documentation)}\n# TYPE {self._sample_name} {self.kind}\n"
        ).encode()
        self._lines: dict[Key, bytes] = {}
        registry.register(self)

    def labels(self, *values: object, **by_name: object) -> S:
        if by_name:
            if values or len(by_name) != len(self.labelnames):
                raise ValueError(f"{self.name}: labels are {', '.join(self.labelnames)}")
            try:
                if len(self.labelnames) == 1:
                    key: Key = str(by_name[self.labelnames[0]])
                else:
                    key = tuple([str(by_name[n]) for n in self.labelnames])
            except KeyError:
                raise ValueError(f"{self.name}: labels are {', '.join(self.labelnames)}") from None
        else:
            key = self._key(values)
        if key not in self._lines:
            self._lines[key] = (self._prefix(key) + "0.0\n").encode()
        return self._series_type(self._lines, key)

    def remove(self, *values: object) -> None:
        """Drop one label set's series (KeyError when it has none)."""
        del self._lines[self._key(values)]

    def text(self) -> str:
        """This family in the text format, exactly as ``generate_latest`` writes it."""
        return b"".join(self.parts()).decode()

    def parts(self, size: int | None = None) -> Iterator[bytes]:
        """This family's exposition (UTF-8) in parts of ``size`` series (``PART_SERIES``), the first
        with the header (``snapshot().parts()``)."""
        return self.snapshot().parts(size)

    def snapshot(self) -> Snapshot:
        """This family's lines as they are now: a consistent family even if series change or a
        reload adds or removes some while a scrape writes it (a pointer per series, no copy)."""
        return Snapshot(self._header, self._name_bytes, list(self._lines.values()))

    def describe(self) -> list[Metric]:
        return [Metric(self.name, self.documentation, self.kind)]

    def collect(self) -> list[Metric]:
        metric = Metric(self.name, self.documentation, self.kind)
        for key, line in list(self._lines.items()):
            values = (key,) if isinstance(key, str) else key
            metric.add_sample(self._sample_name, dict(zip(self.labelnames, values, strict=True)), _value_of(line))
        return [metric]

    def _key(self, values: tuple[object, ...]) -> Key:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: labels are {', '.join(self.labelnames)}")
        if len(values) == 1:
            return str(values[0])
        return values if all(type(v) is str for v in values) else tuple([str(v) for v in values])  # type: ignore[return-value]

    def _prefix(self, key: Key) -> str:
        if isinstance(key, str):
            return self._template % (_escape_label_value(key),)
        return self._template % tuple([_escape_label_value(key[i]) for i in self._label_order])


class LabelledGauge(_Family[_GaugeSeries]):
    kind = "gauge"
    _series_type = _GaugeSeries


class LabelledCounter(_Family[_CounterSeries]):
    kind = "counter"
    _series_type = _CounterSeries
