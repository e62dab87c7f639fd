"""The Dockerfile and .dockerignore, checked by parsing them.

There is no container engine where the tests run, so the image build itself is not
exercised here; these tests pin the properties the Kubernetes deployment relies on:
a multi-stage build whose runtime stage installs only wheels, a numeric non-root user
(the chart's runAsUser), exec-form ENTRYPOINT/CMD (no shell needed), no HEALTHCHECK,
OCI labels, and the SYNCD_CONFIG default.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CHART_VALUES = ROOT / "helm" / "syncd" / "values.yaml"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, each with its (KEYWORD, argument) instructions.

    Handles parser directives, comments (also inside continued lines) and backslash
    continuations, which is all this Dockerfile uses (no heredocs).
    """
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1].rstrip() + " "
            continue
        current += stripped
        if current.strip():
            logical.append(current.strip())
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, arg = line.partition(" ")
        keyword, arg = keyword.upper(), arg.strip()
        if keyword == "FROM":
            parts = arg.split()
            parts = [p for p in parts if not p.startswith("--platform")]
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif not stages:
            assert keyword == "ARG", f"only ARG may precede the first FROM, found {keyword}"
            key, _, default = arg.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append((keyword, arg))
    return global_args, stages


def expand(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), value)


def key_values(arg: str) -> dict[str, str]:
    """ENV/LABEL arguments in key=value form (quoted values allowed)."""
    out = {}
    for token in shlex.split(arg):
        key, sep, value = token.partition("=")
        assert sep, f"use the key=value form, not {token!r}"
        out[key] = value
    return out


@pytest.fixture(scope="module")
def parsed() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def runtime(parsed: tuple[dict[str, str], list[Stage]]) -> Stage:
    return parsed[1][-1]


def test_multi_stage_with_slim_python_311_runtime(parsed):
    args, stages = parsed
    assert len(stages) >= 2, "builder and runtime stages expected"
    assert stages[0].name == "builder"
    assert expand(stages[-1].base, args) == "python:3.11-slim"
    assert expand(stages[0].base, args).startswith("python:3.11")


def test_builder_builds_wheels_and_runtime_installs_only_wheels(parsed, runtime):
    _, stages = parsed
    builder_runs = " ".join(stages[0].all("RUN"))
    assert re.search(r"pip wheel\b.*--wheel-dir /wheels", builder_runs), builder_runs
    runs = " ".join(runtime.all("RUN"))
    assert "--mount=type=bind,from=builder,source=/wheels" in runs
    install = re.search(r"pip install ([^&]*)", runs)
    assert install, runs
    assert "--no-index" in install.group(1) and "--find-links=/wheels" in install.group(1)
    # No source in the runtime stage: nothing is copied into it at all.
    assert not runtime.all("COPY"), runtime.all("COPY")
    assert not [kw for kw, _ in runtime.instructions if kw == "ADD"]


def test_numeric_non_root_user_matching_the_chart(runtime):
    users = runtime.all("USER")
    assert users, "the runtime stage must set USER"
    user = users[-1]
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER must be numeric (runAsNonRoot cannot verify a name): {user}"
    uid, _, gid = user.partition(":")
    # The chart sets runAsGroup and fsGroup, so the image names its group too (USER uid:gid).
    assert gid, f"USER must name the group as well (uid:gid), as the chart sets runAsGroup: {user}"
    assert int(uid) != 0 and int(gid) != 0
    values = yaml.safe_load(CHART_VALUES.read_text(encoding="utf-8"))
    assert values["podSecurityContext"]["runAsUser"] == int(uid)
    assert values["securityContext"]["runAsUser"] == int(uid)
    assert values["podSecurityContext"]["runAsGroup"] == int(gid)
    assert values["podSecurityContext"]["fsGroup"] == int(gid)


def test_exec_form_entrypoint_and_cmd(runtime):
    assert json.loads(runtime.all("ENTRYPOINT")[-1]) == ["syncd"]
    assert json.loads(runtime.all("CMD")[-1]) == ["run"]


def test_no_healthcheck(parsed):
    _, stages = parsed
    for stage in stages:
        assert not stage.all("HEALTHCHECK"), "Kubernetes probes do health checking; the image must not"


def test_oci_labels(runtime):
    labels: dict[str, str] = {}
    for arg in runtime.all("LABEL"):
        labels.update(key_values(arg))
    for key in ("title", "description", "version", "revision", "created", "source", "licenses"):
        assert f"org.opencontainers.image.{key}" in labels, key
    assert labels["org.opencontainers.image.title"] == "syncd"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"


def test_environment(runtime):
    env: dict[str, str] = {}
    for arg in runtime.all("ENV"):
        env.update(key_values(arg))
    assert env["SYNCD_CONFIG"] == "/etc/syncd/syncd.toml"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1", "the root filesystem is read-only in the chart"
    assert not any(k.startswith("SYNCD_") and k != "SYNCD_CONFIG" for k in env), (
        "SYNCD_* variables override syncd.toml; the image must not set any"
    )


def test_exposed_port_is_the_chart_default(runtime):
    values = yaml.safe_load(CHART_VALUES.read_text(encoding="utf-8"))
    assert runtime.all("EXPOSE") == [str(values["server"]["port"])]


def test_dockerignore_is_an_allow_list_covering_every_copy(parsed):
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert patterns[0] == "*", "start from excluding everything"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    _, stages = parsed
    for stage in stages:
        for arg in stage.all("COPY"):
            tokens = [t for t in arg.split() if not t.startswith("--")]
            for source in tokens[:-1]:
                top = source.split("/")[0]
                assert top in allowed, f"COPY {source} is excluded by .dockerignore"
                assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
    for excluded in (".venv", ".git", "tests", "demo-out"):
        assert excluded not in allowed


def test_parser_handles_continuations_and_comments():
    text = "ARG A=x\nFROM img:${A} AS b\n# c\nRUN one \\\n  # inside\n  two\nUSER 1:2\n"
    args, stages = parse_dockerfile(text)
    assert args == {"A": "x"}
    assert stages[0].name == "b" and expand(stages[0].base, args) == "img:x"
    assert stages[0].all("RUN") == ["one two"]
