"""Validate a ``monitoring/`` folder: Prometheus config and rules with promtool, dashboards by structure.

Run::

    python -m signflow.monitoring.check monitoring     # exit 1 and one line per problem

What it checks: ``promtool check config`` (prometheus.yml and the rule files it names),
``promtool check rules`` and ``promtool test rules`` (every rule file, every unit test), and
for each dashboard JSON: it parses, every panel has at least one target with an expression,
data sources are the ``${datasource}`` variable (a hard-coded uid breaks on any other Grafana),
and every ``$variable`` a query uses is defined.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from signflow.monitoring.dashboards import NO_QUERY_KINDS, iter_queries

# Variables Grafana defines itself.
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


class ToolMissing(RuntimeError):
    """promtool is not installed (``apt-get install prometheus``, see scripts/install_system_deps.sh)."""


def _promtool(*args: str | Path, cwd: Path) -> tuple[int, str]:
    exe = shutil.which("promtool")
    if exe is None:
        raise ToolMissing("promtool not found on PATH: install Debian's 'prometheus' package (make system-deps)")
    proc = subprocess.run([exe, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def check_prometheus(root: Path) -> list[str]:
    """promtool's verdict on prometheus.yml, every rule file and every rule unit test under ``root``."""
    problems = []
    rule_files = sorted(p.relative_to(root) for p in (root / "rules").glob("*.yml"))
    if not rule_files:
        problems.append(f"{root / 'rules'}: no rule files")
    steps = [("check config", ["check", "config", "prometheus.yml"])]
    if rule_files:
        steps.append(("check rules", ["check", "rules", *map(str, rule_files)]))
    for name, args in steps:
        code, output = _promtool(*args, cwd=root)
        if code != 0:
            problems.append(f"promtool {name} failed in {root}:\n{output}")
    return problems + run_rule_tests(root)


def run_rule_tests(root: Path, files: list[str] | None = None) -> list[str]:
    """``promtool test rules`` on ``files`` (relative to ``root``; default: every ``rules/tests/*.yml``)."""
    if files is None:
        files = [str(p.relative_to(root)) for p in sorted((root / "rules" / "tests").glob("*.yml"))]
    if not files:
        return []
    code, output = _promtool("test", "rules", *files, cwd=root)
    return [f"promtool test rules failed in {root}:\n{output}"] if code != 0 else []


def check_dashboard(dashboard: Any, name: str) -> list[str]:
    """Structural problems of one dashboard JSON model (empty list = fine)."""
    if not isinstance(dashboard, dict):
        return [f"{name}: a dashboard must be a JSON object"]
    problems = []
    template_vars = [v for v in dashboard.get("templating", {}).get("list", []) if isinstance(v, dict)]
    variables = {v.get("name") for v in template_vars}
    ds_vars = [v for v in template_vars if v.get("type") == "datasource"]
    if not ds_vars:
        problems.append(f"{name}: no data source template variable (type 'datasource')")
    panels = dashboard.get("panels")
    if not isinstance(panels, list) or not panels:
        return [*problems, f"{name}: no panels"]
    ids: list[Any] = []
    stack = list(panels)
    while stack:
        panel = stack.pop(0)
        stack[:0] = panel.get("panels", [])
        if panel.get("type") == "row":
            continue
        title = panel.get("title") or f"panel id {panel.get('id')}"
        ids.append(panel.get("id"))
        if panel.get("type") in NO_QUERY_KINDS:
            continue
        targets = panel.get("targets")
        if not isinstance(targets, list) or not targets:
            problems.append(f"{name}: panel {title!r} has no targets (queries)")
            continue
        for target in targets:
            expr = target.get("expr") if isinstance(target, dict) else None
            if not isinstance(expr, str) or not expr.strip():
                problems.append(f"{name}: panel {title!r} target {target.get('refId', '?')} has no expression")
    for title, ref, target in iter_queries(dashboard):
        for match in _VARIABLE.finditer(target.get("expr") or ""):
            var = match.group(1) or match.group(2)
            if var not in variables and var not in GRAFANA_BUILTINS:
                problems.append(f"{name}: panel {title!r} query {ref} uses undefined variable ${var}")
    if len(ids) != len(set(ids)):
        problems.append(f"{name}: duplicate panel ids")
    problems += [f"{name}: {problem}" for problem in check_dashboard_model(dashboard)]
    for path, uid in _datasource_uids(dashboard):
        if not uid.startswith("$"):
            problems.append(f"{name}: {path} hard-codes data source uid {uid!r}; use ${{datasource}}")
    return problems


def check_dashboard_model(dashboard: dict[str, Any]) -> list[str]:
    """What Grafana's typed dashboard model (grafana-foundation-sdk) does not keep of ``dashboard``.

    The SDK's models are generated from Grafana's schemas: the dashboard is parsed into them and
    written back, and every key that is dropped (a misspelt field, an option the panel type does
    not have) or changed (a value of the wrong shape) is a problem. No Grafana server needed.
    """
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard

    register_default_plugins()
    try:
        parsed = json.loads(json.dumps(Dashboard.from_json(dashboard), cls=JSONEncoder))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        return [f"not a Grafana dashboard model: {type(error).__name__}: {error}"]
    return _lost(dashboard, parsed, "$")


def _lost(original: Any, parsed: Any, path: str) -> list[str]:
    if isinstance(original, dict):
        if not isinstance(parsed, dict):
            return [f"{path}: an object where the dashboard model has {type(parsed).__name__}"]
        problems = []
        for key, value in original.items():
            if key not in parsed:
                problems.append(f"{path}.{key}: not a field of Grafana's dashboard model")
            else:
                problems += _lost(value, parsed[key], f"{path}.{key}")
        return problems
    if isinstance(original, list):
        if not isinstance(parsed, list) or len(parsed) != len(original):
            return [f"{path}: a list the dashboard model reads differently"]
        return [p for index, (a, b) in enumerate(zip(original, parsed)) for p in _lost(a, b, f"{path}[{index}]")]
    return [] if original == parsed else [f"{path}: {original!r} is read as {parsed!r}"]


def _datasource_uids(node: Any, path: str = "$") -> list[tuple[str, str]]:
    found = []
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and isinstance(ds.get("uid"), str):
            found.append((f"{path}.datasource", ds["uid"]))
        elif isinstance(ds, str) and ds and not ds.startswith("$"):
            found.append((f"{path}.datasource", ds))  # pre-8.x style: the data source name
        for key, value in node.items():
            found += _datasource_uids(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _datasource_uids(value, f"{path}[{index}]")
    return found


def check_dashboards(root: Path) -> list[str]:
    files = sorted((root / "grafana" / "dashboards").glob("*.json"))
    if not files:
        return [f"{root / 'grafana' / 'dashboards'}: no dashboard JSON"]
    problems = []
    for path in files:
        try:
            dashboard = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            problems.append(f"{path}: not valid JSON: {error}")
            continue
        problems += check_dashboard(dashboard, str(path))
    return problems


def check(root: Path) -> list[str]:
    """Every problem found in the monitoring folder ``root``."""
    return check_prometheus(root) + check_dashboards(root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", default="monitoring", help="the monitoring/ folder")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if not (root / "prometheus.yml").is_file():
        print(f"error: {root}/prometheus.yml not found", file=sys.stderr)
        return 2
    try:
        problems = check(root)
    except ToolMissing as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem)
    print(f"{root}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
