"""Reports of a conversation test run: lines for a terminal, JUnit XML for CI, JSON for tools."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from voicebot.convtest.results import ConversationResult, SuiteResult


def format_conversation(result: ConversationResult) -> str:
    """'PASS  name  (file, 1.2 s)', then one indented line per failing step."""
    where = f"{result.path}, " if result.path else ""
    head = f"{'PASS' if result.passed else 'FAIL'}  {result.name}  ({where}{result.seconds:.1f} s)"
    return "\n".join([head, *(f"      {line}" for line in result.failure_lines)])


def format_summary(suite: SuiteResult) -> str:
    total, failed = len(suite.conversations), len(suite.failed)
    return f"{total} conversations: {total - failed} passed, {failed} failed ({suite.seconds:.1f} s)"


def format_report(suite: SuiteResult) -> str:
    return "\n".join([*(format_conversation(c) for c in suite.conversations), format_summary(suite)])


def junit_xml(suite: SuiteResult, name: str = "voicebot conversations") -> ET.Element:
    """One testsuite, one testcase per conversation: mismatches are failures, runs that broke are errors."""
    errors = sum(1 for c in suite.conversations if c.errors)
    failures = sum(1 for c in suite.failed if not c.errors)
    root = ET.Element("testsuites")
    node = ET.SubElement(
        root,
        "testsuite",
        name=name,
        tests=str(len(suite.conversations)),
        failures=str(failures),
        errors=str(errors),
        skipped="0",
        time=f"{suite.seconds:.3f}",
    )
    for result in suite.conversations:
        case = ET.SubElement(
            node,
            "testcase",
            classname=_classname(result.path),
            name=result.name,
            time=f"{result.seconds:.3f}",
        )
        if result.path is not None:
            case.set("file", str(result.path))
        if not result.passed:
            lines = result.failure_lines
            problem = ET.SubElement(case, "error" if result.errors else "failure", message=lines[0])
            problem.text = "\n".join(lines)
    return root


def write_junit(suite: SuiteResult, path: Path) -> None:
    tree = ET.ElementTree(junit_xml(suite))
    ET.indent(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)


def _classname(path: Path | None) -> str:
    """CI tools group test cases by dotted class name: 'conversations.shop' for shop/track.yaml."""
    return f"conversations.{path.parent.name}" if path is not None else "conversations"
