"""``make demo``: the daemon end to end on local defaults, for about a minute.

Starts a real OAuth 2.0 server (oidc-provider, as in the integration tests) on
127.0.0.1:9441 standing in for VGS, with 10-second tokens, then runs
``syncd run -c config.example.toml`` and prints each rotation as a consumer
sees it in ./demo-out. Stop early with Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.peers.servers import OidcClient, OidcServer  # noqa: E402

DURATION = float(os.environ.get("SYNCD_DEMO_SECONDS", "60"))


def main() -> int:
    secret = (ROOT / "demo" / "calm.secret").read_text().strip()
    out_dir = ROOT / "demo-out"
    out_dir.mkdir(exist_ok=True)
    for old in out_dir.iterdir():
        if old.is_file():
            old.unlink()
    syncd = Path(sys.executable).parent / "syncd"
    with OidcServer(ttl=10, clients=[OidcClient("calm", secret)], port=9441) as idp:
        print(f"demo: OAuth server (oidc-provider) at {idp.token_url}, 10 s tokens")
        print(f"demo: syncd run -c config.example.toml for {DURATION:.0f} s; status at http://127.0.0.1:9440/status\n")
        daemon = subprocess.Popen([str(syncd), "run", "-c", str(ROOT / "config.example.toml")], cwd=ROOT)
        seen: set[str] = set()
        deadline = time.time() + DURATION
        try:
            while time.time() < deadline and daemon.poll() is None:
                path = out_dir / "calm.json"
                try:
                    doc = json.loads(path.read_text())
                except (OSError, ValueError):
                    time.sleep(0.2)
                    continue
                if doc["fingerprint"] not in seen:
                    seen.add(doc["fingerprint"])
                    print(
                        f">>> rotation {len(seen)}: {path.name} now holds {doc['fingerprint']} "
                        f"(issued {doc['issued_at']}, expires {doc['expires_at']}, re-read after {doc['refresh_after']})"
                    )
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(timeout=15)
        print(f"\ndemo: {len(seen)} rotations seen, IdP issued {idp.issued('calm')} tokens, syncd exited {code}")
        return 0 if code == 0 and len(seen) >= 2 else 1


if __name__ == "__main__":
    sys.exit(main())
