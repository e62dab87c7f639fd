"""A real Prometheus (the Debian `prometheus` binary) scraping local targets and evaluating rules.

Started on 127.0.0.1 with a short scrape and evaluation interval, so alert rules with
lifetime-relative thresholds can be watched firing within seconds against tokens that live
tens of seconds. Queried through its own HTTP API (/api/v1/query, /api/v1/alerts).
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
import urllib.request
from typing import Any

import yaml

from tests.peers.servers import HOST, PeerError, PeerProcess

# Requests to local peers never go through a proxy configured in the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class PrometheusServer(PeerProcess):
    """``prometheus`` with one rule file and static scrape jobs ``{job: [host:port, ...]}``.

    Every scraped series also gets ``namespace`` (what the chart's selectors expect from the
    ServiceMonitor). ``interval`` is both the scrape and the rule evaluation interval.
    """

    name = "prometheus"

    def __init__(
        self, rules: dict[str, Any], jobs: dict[str, list[str]], *, namespace: str, interval: str = "1s"
    ) -> None:
        super().__init__()
        self.config_path = self.workdir / "prometheus.yml"
        rules_path = self.workdir / "rules.yaml"
        rules_path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
        config = {
            "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
            "rule_files": [str(rules_path)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": targets, "labels": {"namespace": namespace}}]}
                for job, targets in jobs.items()
            ],
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    def _command(self) -> list[str]:
        binary = shutil.which("prometheus")
        if binary is None:
            raise PeerError("prometheus not found on PATH; run tests/peers/install.sh (Debian package prometheus)")
        return [
            binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={HOST}:{self.port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]

    def _probe(self) -> bool:
        try:
            with _OPENER.open(f"{self.url}/-/ready", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with _OPENER.open(f"{self.url}{path}{query}", timeout=5) as resp:
            body = json.loads(resp.read())
        if body.get("status") != "success":
            raise PeerError(f"prometheus {path}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the vector's samples (``metric`` labels and ``value``)."""
        data = self._get("/api/v1/query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending or firing) as /api/v1/alerts reports them."""
        found: list[dict[str, Any]] = self._get("/api/v1/alerts")["alerts"]
        return found

    def rules_health(self) -> list[tuple[str, str, str]]:
        """(rule name, health, last error) of every rule, to fail on a rule Prometheus cannot evaluate."""
        groups = self._get("/api/v1/rules")["groups"]
        return [(r["name"], r["health"], r.get("lastError", "")) for g in groups for r in g["rules"]]
