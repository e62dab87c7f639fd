"""Value types every section shares: durations, fractions, file modes, paths relative to the config file.

Each is an ``Annotated`` type whose validator gives the reason and the fix in the
words ``ConfigError`` reports after the key path.
"""

from __future__ import annotations

import math
import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")

#: The longest duration any key accepts. Beyond it a value is a typo (or "inf"), and epoch
#: arithmetic with it would leave the range of datetime and RFC 3339.
MAX_DURATION = 3650 * 86400.0
_DURATION_HINT = "seconds (30) or a string such as '30s', '5m', '1h', '1h30m'"


def parse_duration(value: Any) -> float:
    """Accept 30, 2.5, "30", "30s", "5m", "1h30m", "250ms"; return finite seconds in [0, 3650d]."""
    if isinstance(value, bool):
        raise ValueError(f"a duration must be {_DURATION_HINT}, not a boolean")
    if isinstance(value, int | float):
        seconds = float(value) if abs(value) < 1e300 else math.copysign(math.inf, value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            sign = -1.0 if text.startswith("-") else 1.0
            text = text.removeprefix("-").removeprefix("+")
            pos, seconds = 0, 0.0
            for match in _DURATION_RE.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNITS[match.group(2)]
                pos = match.end()
            if pos != len(text) or not text:
                raise ValueError(f"{value!r} is not a duration: use {_DURATION_HINT}") from None
            seconds *= sign
    else:
        raise ValueError(f"a duration must be {_DURATION_HINT}, not {type(value).__name__}")
    if math.isnan(seconds):
        raise ValueError(f"{value!r} is not a number of seconds: use {_DURATION_HINT}")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative ({value!r}): use 0s up to 3650d")
    if seconds > MAX_DURATION:
        raise ValueError(f"{value!r} is longer than the 3650d (10 years) any duration may be")
    return seconds


def _positive_duration(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError(f"must be above 0s (up to 3650d), got {seconds:g}s: use {_DURATION_HINT}")
    return seconds


#: The shortest token lifetime syncd plans for. Tokens it refreshes live minutes; below a second a
#: refresh is a mint loop, and the planning arithmetic (writes per day, slots) leaves floats behind.
MIN_LIFETIME = 1.0


def _lifetime(seconds: float) -> float:
    if seconds < MIN_LIFETIME:
        raise ValueError(
            f"must be at least {MIN_LIFETIME:g}s (up to 3650d), got {seconds:g}s: a token lifetime is "
            f'seconds to hours, e.g. "5m" or "20m"'
        )
    return seconds


#: A duration of 0s up to MAX_DURATION.
Duration = Annotated[float, BeforeValidator(parse_duration)]
#: A duration that must be above 0s: a zero timeout, lifetime or retry pace is a hot loop or a certain failure.
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive_duration)]
#: A token lifetime: at least MIN_LIFETIME.
LifetimeDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_lifetime)]


def _fraction(low: float, high: float, *, low_open: bool, high_open: bool, example: str) -> Any:
    lo_text = f"{'(' if low_open else '['}{low:g}"
    hi_text = f"{high:g}{')' if high_open else ']'}"

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"must be a number in {lo_text}, {hi_text} such as {example}")
        try:
            number = float(value)
        except (ValueError, OverflowError):
            raise ValueError(
                f"{value!r} is not a number: use a fraction in {lo_text}, {hi_text} such as {example}"
            ) from None
        above = number > low if low_open else number >= low
        below = number < high if high_open else number <= high
        if not (math.isfinite(number) and above and below):
            raise ValueError(f"must be a fraction in {lo_text}, {hi_text} such as {example}, got {value!r}")
        return number

    return BeforeValidator(check)


#: refresh_at: the fraction of the lifetime after which to refresh, strictly between 0 and 1.
RefreshAt = Annotated[float, _fraction(0.0, 1.0, low_open=True, high_open=True, example="0.5")]
#: jitter: +- fraction of the refresh delay, 0 to 0.5 (more could schedule a refresh before issue).
Jitter = Annotated[float, _fraction(0.0, 0.5, low_open=False, high_open=False, example="0.1")]


def parse_verify_interval(value: Any) -> Any:
    """``"auto"`` (halfway between a write and the next refresh), ``"off"``, or a duration above 0."""
    if isinstance(value, str) and value.strip().lower() in ("auto", "off"):
        return value.strip().lower()
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ValueError(f'{exc}; or "auto" (the default) or "off"') from None
    if seconds <= 0:
        raise ValueError('verify_interval must be above 0 (or "off" to turn the check off)')
    return seconds


VerifyInterval = Annotated[float | Literal["auto", "off"], BeforeValidator(parse_verify_interval)]


def _parse_mode(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str) and re.fullmatch(r"0?o?[0-7]{3,4}", value.strip()):
        mode = int(value.strip().replace("o", ""), 8)
    else:
        raise ValueError(f'{value!r} is not a file mode: write it as an octal string such as "0600"')
    if mode & ~0o777:
        raise ValueError(f"file mode {value!r} has bits beyond 0777")
    return mode


FileMode = Annotated[int, BeforeValidator(_parse_mode)]

# The directory of the config file being loaded: relative paths resolve against it.
_BASE_DIR: ContextVar[Path | None] = ContextVar("syncd_config_base_dir", default=None)


def _resolve_path(value: Any) -> Any:
    if isinstance(value, str | Path) and str(value):
        path = Path(os.path.expanduser(str(value)))
        base = _BASE_DIR.get()
        if not path.is_absolute() and base is not None:
            path = base / path
        return path
    return value


ConfigPath = Annotated[Path, BeforeValidator(_resolve_path)]


# The base of every section: an unknown key is an error, and a loaded section is never
# changed in place. Private to this package (its modules import it; nothing else does).
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


#: The configuration of the sections a config holds one of per credential (the credential, its
#: targets, its secret references), declared as pydantic dataclasses with it. They are validated
#: like every other section, but each is a frozen record with slots: no per-instance dict and no
#: set of given keys, which at 100,000 credentials is ~1 KiB per credential (~100 MB).
RECORD = ConfigDict(extra="forbid", populate_by_name=True)
