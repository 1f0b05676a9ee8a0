"""docs/design.md must keep describing what the code does, and every citation of it must land.

What is checked is what can be checked without reading prose: the section layout code comments
cite, the citations themselves (a section number, and the quoted subsection names or backticked
names after it), the wire names of protectors/constants.py, the refusal codes and message texts
webhook/decision.py produces, the quota's result names, and the metric names of every observer.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

from protectors import constants
from protectors.quota import AdmissionResult
from webhook import registration
from webhook.decision import AUDIT_KEY_DRY_RUN, AUDIT_KEY_REJECT_BY
from workers.aggregator import update_trigger

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "docs" / "design.md"
DECISION = ROOT / "webhook" / "decision.py"
THIS_FILE = Path(__file__).resolve().relative_to(ROOT).as_posix()
PRODUCT_PACKAGES = ("audit", "podseidon_site", "protectors", "webhook", "workers")

SECTIONS = {
    1: "The product",
    2: "Words",
    3: "The PodProtector API (v1alpha1)",
    4: "The algorithms",
    5: "Options and defaults",
    6: "Observability",
    7: "How a real kube-apiserver behaves",
    8: "The kube sandbox",
    9: "Known differences from the original Podseidon",
}
# Cited from code as §4 "<name>"; the names are part of the contract.
ALGORITHMS = [
    "Pod health",
    "Aggregation",
    "Summarize",
    "Compaction",
    "Disruption quota",
    "Webhook decision",
    "Generator",
    "Aggregator",
    "Monitor",
]

_SECTION = re.compile(r"^## (\d+)\. (.+?)\s*$")
_SUBSECTION = re.compile(r"^### (.+?)\s*$")


def _normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text)


class Design:
    """design.md split into numbered sections and their ### subsections."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.titles: dict[int, str] = {}
        self.bodies: dict[int, list[str]] = {}
        self.subsections: dict[int, dict[str, list[str]]] = {}
        number: int | None = None
        current: list[str] | None = None
        fenced = False
        for line in text.splitlines():
            if line.lstrip().startswith("```"):
                fenced = not fenced
            if not fenced and (match := _SECTION.match(line)):
                number = int(match.group(1))
                self.titles[number] = match.group(2)
                self.bodies[number] = []
                self.subsections[number] = {}
                current = None
                continue
            if number is None:
                continue
            if not fenced and line.startswith("## "):
                number, current = None, None  # an unnumbered top-level section
                continue
            if not fenced and (match := _SUBSECTION.match(line)):
                current = self.subsections[number].setdefault(match.group(1), [])
                continue
            self.bodies[number].append(line)
            if current is not None:
                current.append(line)

    def section(self, number: int) -> str:
        return _normalize("\n".join(self.bodies[number]))

    def subsection(self, number: int, name: str) -> str:
        return _normalize("\n".join(self.subsections[number][name]))


@pytest.fixture(scope="module")
def design() -> Design:
    return Design(DESIGN.read_text(encoding="utf-8"))


# -- layout -------------------------------------------------------------------------------------


def test_sections_are_numbered_and_named_as_the_code_cites_them(design: Design) -> None:
    assert design.titles == SECTIONS


def test_the_algorithms_have_the_subsections_code_cites(design: Design) -> None:
    assert list(design.subsections[4]) == ALGORITHMS


# -- citations ----------------------------------------------------------------------------------

_CITATION = re.compile(r"design\.md`?\s*§\s*(\d+)")
# What may follow "§N": quoted subsection names (joined by "and" or commas) or a backticked name,
# possibly across a line break inside a comment or docstring.
_QUOTED = re.compile(r'[\s#*]*"([^"\n]+)"')
_JOINED = re.compile(r'\s*(?:,|and)\s*[\s#*]*"([^"\n]+)"')
_BACKTICKED = re.compile(r"[\s#*]*`([^`\n]+)`")
# Inside design.md a cross reference needs no file name.
_INTERNAL = re.compile(r"(?<![\w.])§(\d+)(?=\s*\")")


def _cited_names(text: str, end: int) -> tuple[list[str], list[str]]:
    quoted: list[str] = []
    match = _QUOTED.match(text, end)
    if match:
        quoted.append(match.group(1))
        while more := _JOINED.match(text, match.end()):
            quoted.append(more.group(1))
            match = more
        return quoted, []
    match = _BACKTICKED.match(text, end)
    return [], [match.group(1)] if match else []


def _citations() -> list[tuple[str, int, list[str], list[str]]]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", "*.py", "*.md"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    found = []
    for name in filter(None, (n.decode() for n in listed)):
        path = ROOT / name
        if name == THIS_FILE or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        pattern = _INTERNAL if name == "docs/design.md" else _CITATION
        for match in pattern.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            quoted, backticked = _cited_names(text, match.end())
            found.append((f"{name}:{line}", int(match.group(1)), quoted, backticked))
    return found


def test_code_and_docs_cite_design_md() -> None:
    # A regex that silently stopped matching would make the next test pass vacuously.
    assert len(_citations()) >= 20


@pytest.mark.parametrize(
    ("where", "number", "quoted", "backticked"),
    [pytest.param(*c, id=f"{c[0]} section {c[1]}") for c in _citations()],
)
def test_every_citation_names_a_section_that_exists(
    design: Design, where: str, number: int, quoted: list[str], backticked: list[str]
) -> None:
    assert number in design.titles, f"{where} cites design.md §{number}, which does not exist"
    for name in quoted:
        assert name in design.subsections[number], (
            f'{where} cites §{number} "{name}"; §{number} has {list(design.subsections[number])}'
        )
    for name in backticked:
        assert f"`{name}`" in design.section(number), f"{where}: §{number} never names `{name}`"


_ANCHOR_LINK = re.compile(r"design\.md#([\w-]+)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_into_design_md_land_on_a_heading(design: Design) -> None:
    headings = re.findall(r"^#{1,6} (.+?)\s*$", design.text, re.MULTILINE)
    anchors = {_slug(h) for h in headings}
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", "*.md"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    broken = []
    for name in filter(None, (n.decode() for n in listed)):
        path = ROOT / name
        if not path.is_file():
            continue
        for match in _ANCHOR_LINK.finditer(path.read_text(encoding="utf-8")):
            if match.group(1) not in anchors:
                broken.append(f"{name}: #{match.group(1)}")
    assert not broken, f"links to headings design.md does not have: {broken}"


# -- names and texts the code defines -----------------------------------------------------------


def _wire_names() -> list[str]:
    names = {
        value for key, value in vars(constants).items() if key.isupper() and isinstance(value, str)
    }
    for kind, selector in constants.DEFAULT_PROTECTION_SELECTORS.items():
        names |= {kind, selector}
    names |= {
        update_trigger.LABEL_UPDATE_TRIGGER,
        update_trigger.NEVER_SCHEDULED,
        f"{registration.SELF_LABEL_KEY}={registration.SELF_LABEL_VALUE}",
    }
    return sorted(names)


@pytest.mark.parametrize("name", _wire_names())
def test_every_well_known_name_is_in_the_reference(design: Design, name: str) -> None:
    assert f"`{name}`" in design.text, f"design.md does not name `{name}`"


def _literal_fragments(node: ast.expr) -> list[str]:
    """The fixed text of a message: a string constant, or the constant parts of an f-string."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        parts = [node.value]
    elif isinstance(node, ast.JoinedStr):
        parts = [v.value for v in node.values if isinstance(v, ast.Constant)]
    else:
        parts = []
    fragments = (_normalize(part).strip() for part in parts)
    # Separators such as ": " between two placeholders say nothing on their own.
    return [f for f in fragments if len(f) >= 3]


def _decision_messages() -> list[tuple[int | None, list[str], int]]:
    """(code or None, literal fragments, line) of every refusal and every error the decision
    raises (WebhookUnavailable: HTTP 500; MalformedReview: HTTP 400)."""
    tree = ast.parse(DECISION.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "reject"
            and isinstance(func.value, ast.Name)
            and func.value.id == "Verdict"
        ):
            code = node.args[0]
            assert isinstance(code, ast.Constant), f"line {node.lineno}: code is not a literal"
            found.append((code.value, _literal_fragments(node.args[1]), node.lineno))
        elif isinstance(func, ast.Name) and func.id in ("WebhookUnavailable", "MalformedReview"):
            code = 500 if func.id == "WebhookUnavailable" else 400
            found.append((code, _literal_fragments(node.args[0]), node.lineno))
    return found


def test_the_decision_messages_are_found() -> None:
    messages = _decision_messages()
    codes = {code for code, _, _ in messages}
    assert {400, 404, 409, 429, 500} <= codes, codes
    assert sum(1 for _, fragments, _ in messages if fragments) >= 8


@pytest.mark.parametrize(
    ("code", "fragments", "line"),
    [pytest.param(*m, id=f"decision.py:{m[2]}") for m in _decision_messages()],
)
def test_every_refusal_of_the_decision_is_documented(
    design: Design, code: int, fragments: list[str], line: int
) -> None:
    section = design.subsection(4, "Webhook decision")
    assert re.search(rf"\b{code}\b", section), f"code {code} (decision.py:{line}) is not in §4"
    for fragment in fragments:
        assert fragment in section, (
            f'§4 "Webhook decision" lacks the text {fragment!r} of decision.py:{line}'
        )


def test_the_audit_annotations_of_the_decision_are_documented(design: Design) -> None:
    section = design.subsection(4, "Webhook decision")
    for key in (AUDIT_KEY_DRY_RUN, AUDIT_KEY_REJECT_BY):
        assert f"`{key}" in section, f'§4 "Webhook decision" does not show the audit key {key}'


@pytest.mark.parametrize("result", [r.value for r in AdmissionResult])
def test_every_quota_result_is_documented(design: Design, result: str) -> None:
    assert f"**{result}**" in design.subsection(4, "Disruption quota")


# -- metrics ------------------------------------------------------------------------------------

_METRIC = re.compile(r"\b(?:Counter|Gauge|Histogram|_gauge)\(\s*\"([a-z_]+)\"")


def _code_metrics() -> list[str]:
    names = set()
    for package in PRODUCT_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            names |= set(_METRIC.findall(path.read_text(encoding="utf-8")))
    return sorted(names)


def test_metric_discovery_finds_the_observers_metrics() -> None:
    assert {"webhook_request", "aggregator_reconcile", "monitor_protectors"} <= set(_code_metrics())


@pytest.mark.parametrize("name", _code_metrics())
def test_every_metric_is_in_section_6(design: Design, name: str) -> None:
    assert f"`{name}`" in design.section(6), f"§6 does not list the metric `{name}`"
