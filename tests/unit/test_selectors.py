"""Label selectors: object form, string form, matching, validation."""

import pytest

from protectors.selectors import (
    LabelSelector,
    Operator,
    Requirement,
    SelectorError,
    everything,
    nothing,
    parse_selector_string,
)

WEB0 = {"app": "web", "idx": "0"}
WEB3 = {"app": "web", "idx": "3"}
DB = {"app": "db", "tier": "backend"}
BARE: dict[str, str] = {}

# (id, selector object form, labels, expected match)
DICT_MATCH_CASES = [
    ("empty-matches-all", {}, WEB0, True),
    ("empty-matches-unlabelled", {}, BARE, True),
    ("match-labels-hit", {"matchLabels": {"app": "web"}}, WEB0, True),
    ("match-labels-miss", {"matchLabels": {"app": "web"}}, DB, False),
    ("match-labels-missing-key", {"matchLabels": {"app": "web"}}, BARE, False),
    ("match-labels-all-must-hold", {"matchLabels": {"app": "web", "idx": "1"}}, WEB0, False),
    ("null-parts", {"matchLabels": None, "matchExpressions": None}, DB, True),
    (
        "in-hit",
        {"matchExpressions": [{"key": "idx", "operator": "In", "values": ["0", "1"]}]},
        WEB0,
        True,
    ),
    (
        "in-miss",
        {"matchExpressions": [{"key": "idx", "operator": "In", "values": ["1", "2"]}]},
        WEB0,
        False,
    ),
    (
        "in-absent-key",
        {"matchExpressions": [{"key": "idx", "operator": "In", "values": ["0"]}]},
        DB,
        False,
    ),
    (
        "notin-hit",
        {"matchExpressions": [{"key": "idx", "operator": "NotIn", "values": ["3"]}]},
        WEB0,
        True,
    ),
    (
        "notin-miss",
        {"matchExpressions": [{"key": "idx", "operator": "NotIn", "values": ["3"]}]},
        WEB3,
        False,
    ),
    (
        "notin-absent-key-matches",
        {"matchExpressions": [{"key": "idx", "operator": "NotIn", "values": ["3"]}]},
        DB,
        True,
    ),
    ("exists-hit", {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, DB, True),
    ("exists-miss", {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, WEB0, False),
    (
        "does-not-exist-hit",
        {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]},
        WEB0,
        True,
    ),
    (
        "does-not-exist-miss",
        {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist", "values": []}]},
        DB,
        False,
    ),
    (
        "labels-and-expressions",
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "idx", "operator": "NotIn", "values": ["3"]}],
        },
        WEB3,
        False,
    ),
]


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [c[1:] for c in DICT_MATCH_CASES],
    ids=[c[0] for c in DICT_MATCH_CASES],
)
def test_object_form_matching(selector, labels, expected):
    assert LabelSelector.from_dict(selector).matches(labels) is expected


# (id, string form, labels, expected match)
STRING_MATCH_CASES = [
    ("empty", "", WEB0, True),
    ("whitespace-only", "   ", WEB0, True),
    ("equals", "app=web", WEB0, True),
    ("double-equals", "app==web", WEB0, True),
    ("not-equals-hit", "idx!=3", WEB0, True),
    ("not-equals-miss", "idx!=3", WEB3, False),
    ("not-equals-absent-key", "idx!=3", DB, True),
    ("recorded-equality", "app=web,idx!=3", WEB3, False),
    ("recorded-set", "idx in (1,2)", WEB0, False),
    ("set-with-spaces", "idx in (0, 2)", WEB0, True),
    ("notin", "idx notin (0,1)", WEB0, False),
    ("exists", "tier", DB, True),
    ("not-exists", "!tier", DB, False),
    ("not-exists-spaced", "! tier", WEB0, True),
    ("greater-than", "idx>2", WEB3, True),
    ("greater-than-non-integer-label", "tier>2", DB, False),
    ("less-than", "idx<2", WEB0, True),
    ("less-than-absent", "idx<2", DB, False),
    ("empty-value", "tier=", WEB0, False),
    ("empty-value-in-set", "tier in ()", {"tier": ""}, True),
    ("spaces-everywhere", " app = web , idx in ( 0 , 1 ) ", WEB0, True),
    ("prefixed-key", "app.kubernetes.io/name=web", {"app.kubernetes.io/name": "web"}, True),
    ("in-is-a-value", "mode in (in,notin)", {"mode": "notin"}, True),
]


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [c[1:] for c in STRING_MATCH_CASES],
    ids=[c[0] for c in STRING_MATCH_CASES],
)
def test_string_form_matching(text, labels, expected):
    assert parse_selector_string(text).matches(labels) is expected


# (id, input, canonical string form)
CANONICAL_CASES = [
    ("empty", "", ""),
    ("recorded-equality", "app=web,idx!=3", "app=web,idx!=3"),
    ("recorded-set", "idx in (1,2)", "idx in (1,2)"),
    ("sorted-by-key", "zone=a,app=web", "app=web,zone=a"),
    ("values-sorted", "idx notin (3, 1,2)", "idx notin (1,2,3)"),
    ("double-equals-normalized", "app==web", "app=web"),
    ("exists-and-not", "!tier,gpu", "gpu,!tier"),
    ("gt-lt", "idx>1,idx<5", "idx>1,idx<5"),
    ("duplicates-dropped", "app=web,app=web", "app=web"),
    ("empty-value", "tier=", "tier="),
]


@pytest.mark.parametrize(
    ("text", "canonical"),
    [c[1:] for c in CANONICAL_CASES],
    ids=[c[0] for c in CANONICAL_CASES],
)
def test_string_round_trip(text, canonical):
    selector = parse_selector_string(text)
    assert selector.to_query_string() == canonical
    assert parse_selector_string(canonical) == selector


# (id, object form, string form)
DICT_TO_STRING_CASES = [
    ("labels", {"matchLabels": {"app": "web"}}, "app=web"),
    (
        "all-operators",
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "idx", "operator": "In", "values": ["2", "1"]},
                {"key": "zone", "operator": "NotIn", "values": ["b", "a"]},
                {"key": "gpu", "operator": "Exists"},
                {"key": "tier", "operator": "DoesNotExist"},
            ],
        },
        "app=web,gpu,idx in (1,2),!tier,zone notin (a,b)",
    ),
    ("empty", {}, ""),
]


@pytest.mark.parametrize(
    ("data", "text"),
    [c[1:] for c in DICT_TO_STRING_CASES],
    ids=[c[0] for c in DICT_TO_STRING_CASES],
)
def test_object_form_to_string_and_back(data, text):
    selector = LabelSelector.from_dict(data)
    assert selector.to_query_string() == text
    assert parse_selector_string(text) == selector
    assert LabelSelector.from_dict(selector.to_dict()) == selector


def test_to_dict_shapes():
    selector = parse_selector_string("app=web,idx!=3,gpu,!tier,zone in (a)")
    assert selector.to_dict() == {
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "gpu", "operator": "Exists"},
            {"key": "idx", "operator": "NotIn", "values": ["3"]},
            {"key": "tier", "operator": "DoesNotExist"},
            {"key": "zone", "operator": "In", "values": ["a"]},
        ],
    }
    # Two different equalities on one key cannot share matchLabels.
    assert parse_selector_string("a=1,a=2").to_dict() == {
        "matchExpressions": [
            {"key": "a", "operator": "In", "values": ["1"]},
            {"key": "a", "operator": "In", "values": ["2"]},
        ]
    }


# (id, object form, part of the expected message)
INVALID_DICTS = [
    ("not-an-object", ["app=web"], "must be an object"),
    ("unknown-field", {"matchLabel": {"app": "web"}}, "unknown field"),
    ("bad-label-value", {"matchLabels": {"app": "web!"}}, "invalid label value"),
    ("bad-label-key", {"matchLabels": {"-app": "web"}}, "invalid label key"),
    ("non-string-value", {"matchLabels": {"app": 1}}, "must be strings"),
    (
        "in-without-values",
        {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
        "at least one value",
    ),
    (
        "notin-without-values",
        {"matchExpressions": [{"key": "a", "operator": "NotIn"}]},
        "at least one value",
    ),
    (
        "exists-with-values",
        {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
        "takes no values",
    ),
    (
        "does-not-exist-with-values",
        {"matchExpressions": [{"key": "a", "operator": "DoesNotExist", "values": ["x"]}]},
        "takes no values",
    ),
    (
        "unknown-operator",
        {"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]},
        "not one of In, NotIn",
    ),
    (
        "lowercase-operator",
        {"matchExpressions": [{"key": "a", "operator": "in", "values": ["x"]}]},
        "not one of In, NotIn",
    ),
    ("missing-key", {"matchExpressions": [{"operator": "Exists"}]}, "must be a string"),
    ("expressions-not-a-list", {"matchExpressions": {"key": "a"}}, "must be a list"),
    ("too-long-value", {"matchLabels": {"a": "x" * 64}}, "at most 63"),
    ("two-slashes", {"matchLabels": {"a/b/c": "x"}}, "at most one '/'"),
    ("uppercase-prefix", {"matchLabels": {"Example.com/a": "x"}}, "DNS subdomain"),
]


@pytest.mark.parametrize(
    ("data", "message"), [c[1:] for c in INVALID_DICTS], ids=[c[0] for c in INVALID_DICTS]
)
def test_invalid_object_form(data, message):
    with pytest.raises(SelectorError, match=message):
        LabelSelector.from_dict(data)


INVALID_STRINGS = [
    ("trailing-comma", "app=web,"),
    ("leading-comma", ",app=web"),
    ("double-comma", "app=web,,idx=1"),
    ("unclosed-set", "idx in (1,2"),
    ("set-without-parens", "idx in 1"),
    ("set-missing-comma", "idx in (1 2)"),
    ("empty-in-keyword-key", "in=1"),
    ("bang-without-key", "!"),
    ("bang-equals-without-key", "!=a"),
    ("two-values", "app=web web"),
    ("gt-non-integer", "idx>abc"),
    ("invalid-key", "-app=web"),
    ("invalid-value", "app=web!"),
    ("operator-only", "="),
    ("in-set-stray-operator", "idx in (1,=)"),
]


@pytest.mark.parametrize(
    "text", [c[1] for c in INVALID_STRINGS], ids=[c[0] for c in INVALID_STRINGS]
)
def test_invalid_string_form(text):
    with pytest.raises(SelectorError, match="invalid label selector"):
        parse_selector_string(text)


def test_everything_and_nothing():
    assert everything().matches(WEB0)
    assert everything().matches(None)
    assert everything().is_empty
    assert not nothing().matches(WEB0)
    assert not nothing().matches({})
    assert not nothing().is_empty
    assert LabelSelector.from_dict(None) == nothing()
    assert LabelSelector.from_dict({}) == everything()
    with pytest.raises(SelectorError):
        nothing().to_query_string()
    with pytest.raises(SelectorError):
        nothing().to_dict()


def test_gt_lt_have_no_object_form():
    with pytest.raises(SelectorError, match="Gt/Lt"):
        parse_selector_string("idx>1").to_dict()


def test_requirement_validates_on_construction():
    with pytest.raises(SelectorError, match="exactly one value"):
        Requirement("app", Operator.EQUALS, ("a", "b"))
    assert Requirement("app", Operator.IN, ("b", "a", "b")).values == ("a", "b")


def test_from_labels_and_filter():
    selector = LabelSelector.from_labels({"app": "web"})
    assert selector.to_query_string() == "app=web"
    assert selector.filter([WEB0, DB, WEB3]) == [WEB0, WEB3]


def test_unknown_operator_is_a_selector_error():
    with pytest.raises(SelectorError, match="unknown selector operator"):
        Requirement("app", "~", ("a",))
