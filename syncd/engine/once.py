"""``syncd once`` and ``syncd check --connect``: every credential once, without a scheduler."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping

from syncd.config import Config, SecretUnavailableError
from syncd.engine.minting import Minter
from syncd.engine.rotation import Rotation
from syncd.engine.state import CredentialState, RunReport, error_view
from syncd.oauth import MintError


async def run_once(
    rotation: Rotation,
    credentials: Mapping[str, CredentialState],
    names: Iterable[str],
    progress: Callable[[RunReport], None] | None = None,
) -> list[RunReport]:
    """Mint and write each named credential once; every target is written, whatever its backoff."""

    async def one(name: str) -> RunReport:
        st = credentials[name]
        minted = await rotation.attempt_mint(st)
        if minted:
            await rotation.write_pending(st, force=True)
        rotation.update_state(st)
        errors = []
        if not minted and st.last_error:
            errors.append(f"mint: {st.last_error['message']}")
        for ts in st.targets:
            if minted and (st.token is None or not ts.holds(st.token)):
                msg = ts.last_error["message"] if ts.last_error else "not written"
                errors.append(f"{ts.label}: {msg}")
        report = RunReport(name, ok=minted and not errors, minted=minted, errors=errors)
        if progress:
            progress(report)
        return report

    return list(await asyncio.gather(*(one(n) for n in names)))


async def check_once(
    minter: Minter, config: Config, credentials: Iterable[CredentialState]
) -> dict[str, list[tuple[str, str]]]:
    """Mint once per credential (nothing written) and read every target: the problems found."""

    async def one(st: CredentialState) -> tuple[str, list[tuple[str, str]]]:
        problems: list[tuple[str, str]] = []
        try:
            payload = await minter.mint(st)
            life = payload.lifetime
            expected = st.cfg.token_lifetime_for(config.defaults)
            if abs(life - expected) > max(5.0, expected * 0.1):
                problems.append(
                    (
                        "token_lifetime",
                        f"the IdP issued a {life:.0f}s token but the plan assumes {expected:.0f}s: "
                        f'set token_lifetime = "{life:.0f}s" so quota checks use the real cadence',
                    )
                )
        except (MintError, SecretUnavailableError, ValueError) as exc:
            problems.append(("mint", error_view(exc)["message"]))
        except Exception as exc:
            # A check reports what it found; an unclassified failure (a CA bundle that
            # cannot be loaded, say) is one more finding, not a traceback.
            problems.append(("mint", f"{type(exc).__name__}: {error_view(exc)['message']}"))
        for ts in st.targets:
            try:
                await ts.store.read(ts.cfg.key, target=ts.cfg)
            except Exception as exc:
                problems.append((ts.label, f"read failed: {error_view(exc)['message']}"))
        return st.name, problems

    return dict(await asyncio.gather(*(one(st) for st in credentials)))
