#!/usr/bin/env python3
"""Checks the Prometheus rules and the Grafana dashboard in deploy/ against certgate's source.

promtool checks that the rules parse and fire; it cannot know which metrics certgate
exposes. This script does, offline:

1. The metric names certgate exposes are read from the source (src/): the families
   registered in src/telemetry/metrics.rs, the `SnapshotFamily` collectors, and every
   `encode_descriptor("name", ...)`, with the `certgate_` prefix, the unit, and the series
   suffixes of their type (`_total`; `_bucket`, `_sum`, `_count`). Renaming a metric in the
   source without the rules and dashboard fails here.
2. Every metric named in a rule or dashboard expression is one of them (or `up`, or a series
   recorded by the rules), and every selector carries `job="certgate"` (the dashboard's also
   `instance=~"$instance"`).
3. Each alert has `severity` page or ticket, `summary`, `description`, and a `runbook`
   pointing at a heading that exists in docs/runbook.md.
4. The dashboard is JSON with unique panel ids, the `datasource` and `instance` variables,
   every panel on `${datasource}`.

With --exprs-out FILE it also writes the dashboard's expressions, Grafana variables replaced,
as a rules file for `promtool check rules` (which then proves each one is valid PromQL).

Exits 1 with one line per problem. Needs python3 and PyYAML; no network.
"""

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
JOB = 'job="certgate"'
INSTANCE = 'instance=~"$instance"'
SEVERITIES = {"page", "ticket"}

# --- what the source exposes -------------------------------------------------------------

STRING = r'"(?:[^"\\]|\\[\s\S])*"'
# registry.register("name", "help" "help"..., variable)
REGISTER = re.compile(r'registry\s*\.\s*register\(\s*"(\w+)"\s*,\s*(?:' + STRING + r'\s*)+,\s*(\w+)')
# encoder.encode_descriptor("name", "help", None | Some(&Unit::X), type)
DESCRIPTOR = re.compile(
    r'encode_descriptor\(\s*"(\w+)"\s*,\s*(?:' + STRING + r'\s*)+,\s*'
    r'(None|Some\(\s*&\s*Unit::(\w+)\s*\))\s*,\s*([\w.:()]+)'
)
SNAPSHOT = re.compile(r'SnapshotFamily\s*\{\s*name:\s*"(\w+)".*?kind:\s*SnapshotKind::(\w+)', re.S)
SUFFIXES = {
    "counter": ["_total"],
    "gauge": [""],
    "histogram": ["_bucket", "_sum", "_count"],
    # A type the script could not tell: any series name of the family.
    "unknown": ["", "_total", "_bucket", "_sum", "_count"],
}


def kind_of(text):
    """The metric type a Rust type or expression names (Histogram before Counter: a
    histogram family's constructor mentions no counter, the reverse is not true)."""
    for word, kind in (("Histogram", "histogram"), ("Counter", "counter"), ("Gauge", "gauge")):
        if word in text:
            return kind
    return "unknown"


def descriptor_kind(source, expr):
    if expr.startswith("MetricType::"):
        return kind_of(expr.split("::", 1)[1])
    # `x.metric_type()` where `let x = &self....field;` and the struct has `field: Type`.
    # `x.metric_type()` where `let x = ConstCounter::new(..);`, or `let x = &self....field;`
    # and the struct has `field: Type`.
    var = expr.split(".", 1)[0]
    m = re.search(r"let\s+" + re.escape(var) + r"\s*=\s*([^;]*);", source)
    if not m:
        return "unknown"
    if kind_of(m.group(1)) != "unknown":
        return kind_of(m.group(1))
    path = re.fullmatch(r"&?[\w.]*?(\w+)", m.group(1).strip())
    field = path and re.search(r"\b" + re.escape(path.group(1)) + r"\s*:\s*([^\n]+)", source)
    return kind_of(field.group(1)) if field else "unknown"


def exposed_families(src):
    """{family name with prefix and unit: type} from the Rust sources under `src`."""
    families = {}
    for path in sorted(src.rglob("*.rs")):
        text = path.read_text()
        for name, var in REGISTER.findall(text):
            m = re.search(r"let\s+" + re.escape(var) + r"\s*=\s*([^;]*);", text)
            families[f"certgate_{name}"] = kind_of(m.group(1)) if m else "unknown"
        for name, _, unit, expr in DESCRIPTOR.findall(text):
            full = f"certgate_{name}" + (f"_{unit.lower()}" if unit else "")
            families[full] = descriptor_kind(text, expr)
        for name, kind in SNAPSHOT.findall(text):
            families[f"certgate_{name}"] = kind_of(kind)
    return families


def series_names(families):
    names = {"up": "up"}
    for family, kind in families.items():
        for suffix in SUFFIXES[kind]:
            names[family + suffix] = family
    return names


# --- PromQL: the metric selectors of an expression ----------------------------------------

TOKEN = re.compile(
    r'\s+|(?P<str>"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`)'
    r"|(?P<num>\d[\w.]*|\.\d\w*)"
    r"|(?P<var>\$\{[^}]*\}|\$\w+)"
    r"|(?P<ident>[A-Za-z_:][\w:]*)"
    r"|(?P<punct>=~|!~|!=|==|>=|<=|[{}()\[\],=<>+\-*/%^@!])"
)
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = GROUPING | {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}


def tokens(expr):
    out, pos = [], 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"cannot read {expr[pos:pos + 20]!r}")
        pos = m.end()
        if m.lastgroup:
            out.append((m.lastgroup, m.group(m.lastgroup)))
    return out


def selectors(expr):
    """[(metric name, [matcher without spaces])] of every vector selector in `expr`."""
    toks = tokens(expr)
    found, i = [], 0

    def skip_group(j, open_, close):
        depth = 0
        while j < len(toks):
            if toks[j][1] == open_:
                depth += 1
            elif toks[j][1] == close:
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
        raise ValueError(f"unbalanced {open_} in {expr!r}")

    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else None
        if text == "[":
            i = skip_group(i, "[", "]")  # a range or subquery step: durations only
            continue
        if kind != "ident":
            i += 1
            continue
        if text in GROUPING:
            i = skip_group(i + 1, "(", ")") if nxt == "(" else i + 1
            continue
        if text in KEYWORDS or nxt == "(" or (text in AGGREGATIONS and nxt in ("by", "without")):
            i += 1  # a keyword, a function or an aggregation
            continue
        matchers = [""]
        j = i + 1
        if nxt == "{":
            j = skip_group(i + 1, "{", "}")
            for _, t in toks[i + 2 : j - 1]:
                if t == ",":
                    matchers.append("")
                else:
                    matchers[-1] += t
        found.append((text, [m for m in matchers if m]))
        i = j
    return found


def check_expr(where, expr, known, problems, extra_matchers=()):
    try:
        sels = selectors(expr)
    except ValueError as e:
        problems.append(f"{where}: {e}")
        return []
    if not sels:
        problems.append(f"{where}: no metric in {expr!r}")
    for name, matchers in sels:
        if name not in known:
            problems.append(f"{where}: {name} is not a metric certgate exposes")
        # Series recorded by the rules carry the job of the aggregation they come from.
        if name.startswith("certgate:"):
            continue
        for m in (JOB, *extra_matchers):
            if m not in matchers:
                problems.append(f"{where}: {name} without {m}")
    return [name for name, _ in sels]


# --- the rules ---------------------------------------------------------------------------


def anchors(runbook):
    """GitHub's anchors of the Markdown headings."""
    out = set()
    for line in runbook.read_text().splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(slug)
    return out


def check_rules(path, names, runbook, problems):
    doc = yaml.safe_load(path.read_text())
    recorded = {r["record"] for g in doc["groups"] for r in g["rules"] if "record" in r}
    known = {**names, **{r: r for r in recorded}}
    heads = anchors(runbook)
    used, alerts = [], set()
    for group in doc["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            where = f"{path.name}: {name}"
            used += check_expr(where, str(rule["expr"]), known, problems)
            if "alert" not in rule:
                continue
            if name in alerts:
                problems.append(f"{where}: alert defined twice")
            alerts.add(name)
            if rule.get("labels", {}).get("severity") not in SEVERITIES:
                problems.append(f"{where}: severity must be one of {sorted(SEVERITIES)}")
            notes = rule.get("annotations", {})
            for key in ("summary", "description", "runbook"):
                if not notes.get(key):
                    problems.append(f"{where}: no {key} annotation")
            target = notes.get("runbook", "")
            if target:
                file, _, anchor = target.partition("#")
                if file != "docs/runbook.md" or anchor not in heads:
                    problems.append(f"{where}: runbook {target} names no heading of docs/runbook.md")
    return used


# --- the dashboard -----------------------------------------------------------------------

GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$instance": ".+"}


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def check_layout(name, panels, problems):
    """Panels fit the 24 columns and do not cover each other."""
    placed = []
    for p in panels:
        g = p.get("gridPos", {})
        x, y, w, h = (g.get(k, 0) for k in ("x", "y", "w", "h"))
        if w <= 0 or h <= 0 or x < 0 or x + w > 24:
            problems.append(f"{name}: panel {p.get('id')} is outside the 24 columns")
        for other, (ox, oy, ow, oh) in placed:
            if x < ox + ow and ox < x + w and y < oy + oh and oy < y + h:
                problems.append(f"{name}: panels {other} and {p.get('id')} overlap")
        placed.append((p.get("id"), (x, y, w, h)))


def check_dashboard(path, names, problems, exprs_out):
    try:
        dash = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        problems.append(f"{path.name}: not JSON: {e}")
        return []
    if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
        problems.append(f"{path.name}: schemaVersion {dash.get('schemaVersion')} is older than 36")
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    if ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problems.append(f"{path.name}: no `datasource` variable of Prometheus data sources")
    if variables.get("instance", {}).get("type") != "query":
        problems.append(f"{path.name}: no `instance` query variable")
    check_layout(path.name, dash.get("panels", []), problems)
    ids, used, exprs = set(), [], []
    for p in all_panels(dash.get("panels", [])):
        pid = p.get("id")
        where = f"{path.name}: panel {pid} {p.get('title')!r}"
        if not isinstance(pid, int):
            problems.append(f"{where}: no numeric id")
        elif pid in ids:
            problems.append(f"{where}: duplicate panel id {pid}")
        ids.add(pid)
        if "gridPos" not in p:
            problems.append(f"{where}: no gridPos")
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"{where}: data source is not ${{datasource}}")
        targets = p.get("targets", [])
        if not targets:
            problems.append(f"{where}: no query")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs):
            problems.append(f"{where}: refIds repeat")
        for t in targets:
            expr = t.get("expr", "")
            used += check_expr(where, expr, names, problems, (INSTANCE,))
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            if "$" in expr:
                problems.append(f"{where}: unknown Grafana variable in {expr!r}")
            exprs.append(expr)
    if exprs_out:
        rules = [{"record": f"dashboard_expr_{i}", "expr": e} for i, e in enumerate(exprs)]
        exprs_out.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    return used


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", type=Path, default=ROOT / "src")
    ap.add_argument("--rules", type=Path, default=ROOT / "deploy/prometheus/certgate-rules.yaml")
    ap.add_argument("--dashboard", type=Path, default=ROOT / "deploy/grafana/certgate-dashboard.json")
    ap.add_argument("--runbook", type=Path, default=ROOT / "docs/runbook.md")
    ap.add_argument("--exprs-out", type=Path, help="write the dashboard's expressions as a rules file")
    args = ap.parse_args()

    families = exposed_families(args.src)
    if len(families) < 10:
        print(f"check_monitoring: only {len(families)} metric families found under {args.src}", file=sys.stderr)
        return 1
    names = series_names(families)
    problems = []
    used = check_rules(args.rules, names, args.runbook, problems)
    used += check_dashboard(args.dashboard, names, problems, args.exprs_out)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 1
    on_dashboard = {names[n] for n in used if n in names}
    unused = sorted(set(families) - on_dashboard)
    print(f"check_monitoring: {len(families)} metric families, rules and dashboard use only these")
    if unused:
        print(f"check_monitoring: note: not on the dashboard or in a rule: {', '.join(unused)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
