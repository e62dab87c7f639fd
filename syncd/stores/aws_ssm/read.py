"""The consumer's side of SSM Parameter Store: the JSON payload in a SecureString parameter."""

from __future__ import annotations

from typing import Any

from syncd.stores._aws.read import AwsSource
from syncd.stores.reading import Fetched, from_doc, loads


class SsmSource(AwsSource):
    """An SSM Parameter Store SecureString whose value is the JSON payload."""

    service = "ssm"

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = name

    def fetch(self, now: float) -> Fetched:
        src = self.description
        resp = self._call(
            f"parameter {self.name!r}",
            "ssm:GetParameter (and kms:Decrypt on its key)",
            "get_parameter",
            Name=self.name,
            WithDecryption=True,
        )
        value = str(resp.get("Parameter", {}).get("Value", ""))
        if not value.lstrip().startswith("{"):
            raise self._not_json("parameter")
        return from_doc(loads(value, src), src)
