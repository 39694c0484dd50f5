"""The deploy side of SLOs: Prometheus alert rules that promtool accepts and whose unit tests
pass on sample series, a Grafana dashboard that only charts what Steward exports, and the
compose file provisioning both."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import activities.metrics
import activities.slo
import api.metrics
import api.services.dead_letters
import api.services.metrics_summary

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "slo-rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tests" / "slo-rules-test.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "steward.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian package `prometheus`: apt-get install prometheus)",
)
METRIC = re.compile(r"\bsteward[_:][a-z0-9_:]+")
MODULES = (
    activities.metrics,
    activities.slo,
    api.metrics,
    api.services.dead_letters,
    api.services.metrics_summary,
)
"""Where Steward's Prometheus metrics are defined: imported, they are in the default registry."""


def _exported() -> set[str]:
    """Every series name Steward's API and worker can export."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}.get(family.type, [""])
        names.update(family.name + s for s in suffixes)
    return names


def _rules() -> dict[str, Any]:
    return dict(yaml.safe_load(RULES.read_text()))


def _recorded() -> set[str]:
    return {r["record"] for g in _rules()["groups"] for r in g["rules"] if "record" in r}


@needs_promtool
def test_promtool_checks_the_rules_and_their_unit_tests_pass() -> None:
    assert PROMTOOL is not None
    check = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 20 rules found" in check.stdout
    tested = subprocess.run(
        [PROMTOOL, "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        check=False,
        cwd=RULE_TESTS.parent,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_rule_reads_series_steward_exports_at_the_workbook_burn_rates() -> None:
    exported, recorded = _exported(), _recorded()
    for group in _rules()["groups"]:
        for rule in group["rules"]:
            for name in METRIC.findall(rule["expr"]):
                assert name in exported | recorded, f"{name} in {rule.get('record') or rule['alert']}"
    alerts = [r for g in _rules()["groups"] for r in g["rules"] if "alert" in r]
    pages = [a for a in alerts if a["labels"]["severity"] == "page"]
    tickets = [a for a in alerts if a["labels"]["severity"] == "ticket"]
    assert len(pages) == len(tickets) == 4
    assert all("14.4" in a["expr"] and "1h" in a["expr"] and "5m" in a["expr"] for a in pages)
    assert all("6" in a["expr"] and "6h" in a["expr"] and "30m" in a["expr"] for a in tickets)


def test_the_dashboard_charts_every_figure_from_series_steward_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported, recorded = _exported(), _recorded()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    for expr in exprs:
        for name in METRIC.findall(expr):
            assert name in exported | recorded, f"{name} is charted but nothing exports it"
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for figure in (
        "turns",
        "latency",
        "failure rate",
        "handed off",
        "approvals waiting",
        "tool calls",
        "tokens",
    ):
        assert figure in titles
    assert "deliveries" in titles and "dead letters" in titles and "burn rate" in titles
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    source = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    assert uids == {d["uid"] for d in source["datasources"]}


def test_compose_provisions_prometheus_with_the_rules_and_grafana_with_the_dashboard() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in services["prometheus"]["volumes"])
    assert (ROOT / mounts["./deploy/prometheus/slo-rules.yml"].lstrip("/")).name == "slo-rules.yml"
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    [pattern] = config["rule_files"]
    assert Path(mounts["./deploy/prometheus/slo-rules.yml"]).match(pattern)
    grafana = dict(v.rsplit(":", 1)[0].split(":", 1) for v in services["grafana"]["volumes"])
    for host in grafana:
        assert (ROOT / host).is_dir(), host
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "steward.yml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == grafana["./deploy/grafana/dashboards"]
