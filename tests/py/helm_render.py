#!/usr/bin/env python3
"""Render a Helm chart offline with Helm's own Go engine, after linting it.

    helm_render.py CHART VALUES NAMESPACE OUT_FILE [--release NAME] [--kube-version V]

Uses helm-python-sdk (libhelm_c, Helm v4 SDK): `helm_python.lint` then
`helm_python.Chart.load(...).render(...)`. No cluster, network or helm binary.
OUT_FILE receives the multi-document YAML, one document per object, in template
path order, each headed by a `# Source:` comment like `helm template` prints.

Exit codes: 0 rendered and lint clean; 1 lint errors or render failure (messages
on stderr, OUT_FILE not written); 2 usage error.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import helm_python as helm

# Lint severities in the report of helm_python.lint.
SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
WARNING, ERROR = 2, 3

# Helm splits a template's output into documents on lines holding only "---".
DOCUMENT_SEPARATOR = re.compile(r"^---[ \t]*$", re.MULTILINE)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chart", type=Path, help="chart directory")
    parser.add_argument("values", type=Path, help="values YAML file")
    parser.add_argument("namespace", help="release namespace")
    parser.add_argument("out_file", type=Path, help="where to write the rendered YAML")
    parser.add_argument(
        "--release",
        help="release name (default: the values' app.name, else the chart name)",
    )
    parser.add_argument(
        "--kube-version",
        default="v1.30.0",
        help="Kubernetes version lint checks against (default: %(default)s)",
    )
    return parser.parse_args(argv)


def lint_errors(args: argparse.Namespace, values: dict) -> list[str]:
    """Lint like `helm lint CHART -f VALUES --namespace NS`; return ERROR findings.

    Warnings and errors are printed to stderr; only errors fail the run. Lint
    mode only logs `fail` calls (Helm does that), so the render reports those.
    """
    report = helm.lint(
        args.chart, values, namespace=args.namespace, kube_version=args.kube_version
    )
    errors = []
    for message in report.get("messages") or []:
        severity = message.get("severity", 0)
        text = message.get("error")
        if severity < WARNING:
            continue
        print(
            f"helm lint: [{SEVERITY.get(severity, severity)}] {message.get('path')}: {text}",
            file=sys.stderr,
        )
        if severity >= ERROR:
            errors.append(text)
    # "errors" repeats the ERROR messages; print only what they did not say.
    for error in report.get("errors") or []:
        if error not in errors:
            print(f"helm lint: [ERROR] {error}", file=sys.stderr)
            errors.append(error)
    return errors


def documents(manifests: dict[str, str]) -> str:
    """Join rendered templates into one stream of non-empty YAML documents."""
    out = []
    for path in sorted(manifests):
        if path.endswith("NOTES.txt"):
            continue
        for document in DOCUMENT_SEPARATOR.split(manifests[path]):
            body = document.strip("\n")
            if not any(
                line.strip() and not line.lstrip().startswith("#")
                for line in body.splitlines()
            ):
                continue
            out.append(f"---\n# Source: {path}\n{body}\n")
    return "".join(out)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        values = helm.values_from_yaml(args.values.read_text(encoding="utf-8"))
        errors = lint_errors(args, values)
        if errors:
            print(f"helm lint: {len(errors)} error(s) in {args.chart}", file=sys.stderr)
            return 1
        with helm.Chart.load(args.chart) as chart:
            release = (
                args.release or (values.get("app") or {}).get("name") or chart.name
            )
            manifests = chart.render(
                values, name=release, namespace=args.namespace, is_install=True
            )
        rendered = documents(manifests)
        if not rendered:
            print(f"helm render: {args.chart} rendered no objects", file=sys.stderr)
            return 1
        args.out_file.write_text(rendered, encoding="utf-8")
    except (OSError, helm.HelmError) as error:
        print(f"helm render: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
