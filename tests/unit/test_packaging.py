"""pyproject.toml lists its packages (the example DAGs are mapped into the wheel from dags_examples/),
so a new subpackage must be listed too, or the wheel would silently miss it."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_subpackage_is_listed_in_pyproject() -> None:
    text = (REPO / "pyproject.toml").read_text()
    block = re.search(r"^packages = \[(.*?)^\]", text, re.S | re.M)
    assert block, "[tool.setuptools] packages not found"
    listed = set(re.findall(r'"([\w.]+)"', block.group(1)))
    root = REPO / "airflow_provider_crowdtwist"
    on_disk = {
        ".".join(p.parent.relative_to(REPO).parts)
        for p in root.rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert on_disk <= listed, sorted(on_disk - listed)
    assert "airflow_provider_crowdtwist.example_dags" in listed
    assert 'airflow_provider_crowdtwist.example_dags" = "dags_examples"' in text
    assert (root / "py.typed").exists()
    assert "Apache License" in (REPO / "LICENSE").read_text()[:200]


def test_the_long_description_has_no_relative_link() -> None:
    """The README is the package's long description on PyPI, where a relative link is a dead link."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)]+)\)", readme) + re.findall(r'(?:src|href)="([^"]+)"', readme)
    relative = [link for link in links if not re.match(r"^(https?://|mailto:|#)", link)]
    assert relative == [], f"relative links in README.md (dead on PyPI): {relative}"
