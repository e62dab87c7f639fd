"""``syncd init`` and ``syncd --version``: what a newcomer runs first."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from syncd import __version__
from syncd.cli import app
from syncd.starter import template_text

ROOT = Path(__file__).resolve().parents[2]


def invoke(*args: str, cwd: Path | None = None):
    old = Path.cwd()
    if cwd:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(app, list(args), env={"COLUMNS": "80", "SYNCD_CONFIG": None})
    finally:
        os.chdir(old)


def test_template_is_config_example():
    """The packaged starter is config.example.toml: after a pip install only the package is there."""
    assert template_text() == (ROOT / "config.example.toml").read_text(), (
        "syncd/templates/config.toml drifted from config.example.toml: "
        "cp config.example.toml syncd/templates/config.toml"
    )


def test_template_is_package_data():
    """A wheel carries only what pyproject.toml declares: the template must be declared there."""
    text = (ROOT / "pyproject.toml").read_text()
    assert "[tool.setuptools.package-data]" in text and '"templates/*.toml"' in text


def test_init_writes_a_config_that_check_accepts_with_only_the_secret(tmp_path: Path):
    result = invoke("init", str(tmp_path / "syncd.toml"))
    assert result.exit_code == 0, result.output
    written = tmp_path / "syncd.toml"
    assert written.read_text() == template_text()
    assert written.stat().st_mode & 0o077 == 0
    assert "demo/calm.secret" in result.output and "syncd check -c" in result.output

    missing = invoke("check", "-c", str(written))
    assert missing.exit_code == 2  # the secret file is what the newcomer still has to supply
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "calm.secret").write_text("s3cr3t-value\n")
    result = invoke("check", "-c", str(written))
    assert result.exit_code == 0, result.output
    assert "ok: configuration is valid" in result.output
    assert "s3cr3t-value" not in result.output


def test_init_defaults_to_syncd_toml_in_cwd_and_in_a_directory(tmp_path: Path):
    assert invoke("init", cwd=tmp_path).exit_code == 0
    assert (tmp_path / "syncd.toml").read_text() == template_text()
    sub = tmp_path / "etc"
    sub.mkdir()
    assert invoke("init", str(sub)).exit_code == 0
    assert (sub / "syncd.toml").is_file()


def test_init_refuses_to_overwrite_without_force(tmp_path: Path):
    target = tmp_path / "syncd.toml"
    target.write_text("# my working config\n")
    result = invoke("init", str(target))
    assert result.exit_code == 2
    assert "already exists" in result.output and "--force" in result.output
    assert target.read_text() == "# my working config\n"
    result = invoke("init", str(target), "--force")
    assert result.exit_code == 0, result.output
    assert target.read_text() == template_text()


@pytest.mark.parametrize("args", [["--version"], ["version"]])
def test_version_flag_and_command(args: list[str]):
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"syncd {__version__} ")


def test_readme_node_version_is_what_the_peers_need():
    """The README's Node.js minimum is the oidc peer's engines field, which install.sh enforces."""
    import json
    import re

    engines = json.loads((ROOT / "tests/peers/oidc/package.json").read_text())["engines"]["node"]
    minimum = engines.removeprefix(">=")
    readme = (ROOT / "README.md").read_text()
    assert re.search(rf"Node {re.escape(minimum)}\+", readme), f"README.md should say Node {minimum}+"
    major, minor = minimum.split(".")[:2]
    install = (ROOT / "tests/peers/install.sh").read_text()
    assert f"min_node_major={major}\n" in install and f"min_node_minor={minor}\n" in install
