//! Table-driven tests of the selector language (reference §10) plus property tests:
//! random trees round-trip through `Display` and keep their meaning, and no input panics.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use starling_selector::{Expr, InvalidExpr, Selector, MAX_LABEL_LENGTH, MAX_NESTING};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// (selector, labels, expected match)
type MatchCase = (&'static str, &'static [(&'static str, &'static str)], bool);

const MATCH_CASES: &[MatchCase] = &[
    // Empty selector and all().
    ("", &[], true),
    ("", &[("a", "b")], true),
    ("  \t ", &[("a", "b")], true),
    ("all()", &[], true),
    ("all( )", &[("x", "y")], true),
    ("!all()", &[("x", "y")], false),
    ("global()", &[], true),
    ("global(\t)", &[("a", "b")], true),
    // has()
    ("has(a)", &[("a", "")], true),
    ("has(a)", &[("b", "a")], false),
    ("has( a )", &[("a", "x")], true),
    ("!has(a)", &[("b", "x")], true),
    ("!has(a)", &[("a", "x")], false),
    // ==
    ("a == \"x\"", &[("a", "x")], true),
    ("a == \"x\"", &[("a", "X")], false),
    ("a == \"x\"", &[], false),
    ("a=='x'", &[("a", "x")], true),
    ("a == \"\"", &[("a", "")], true),
    ("a == \"\"", &[], false),
    // != matches when absent.
    ("a != \"x\"", &[("a", "y")], true),
    ("a != \"x\"", &[("a", "x")], false),
    ("a != \"x\"", &[], true),
    // in / not in
    ("a in {\"x\", \"y\"}", &[("a", "y")], true),
    ("a in {\"x\", \"y\"}", &[("a", "z")], false),
    ("a in {\"x\", \"y\"}", &[], false),
    ("a in {}", &[("a", "")], false),
    ("a in {\"x\",}", &[("a", "x")], true),
    ("a in{'x'}", &[("a", "x")], true),
    ("a not in {\"x\"}", &[("a", "y")], true),
    ("a not in {\"x\"}", &[("a", "x")], false),
    ("a not in {\"x\"}", &[], true),
    ("a notin {\"x\"}", &[("a", "x")], false),
    ("a not \t in {}", &[], true),
    // contains / starts with / ends with
    ("a contains \"ell\"", &[("a", "hello")], true),
    ("a contains \"xyz\"", &[("a", "hello")], false),
    ("a contains \"\"", &[], false),
    ("a starts with \"he\"", &[("a", "hello")], true),
    ("a starts with \"lo\"", &[("a", "hello")], false),
    ("a startswith \"he\"", &[("a", "hello")], true),
    ("a ends with \"lo\"", &[("a", "hello")], true),
    ("a ends with \"he\"", &[("a", "hello")], false),
    ("a ends with \"he\"", &[], false),
    // Labels: the whole charset, word-operator spellings used as labels, both quote kinds.
    (
        "app.kubernetes.io/name == \"web\"",
        &[("app.kubernetes.io/name", "web")],
        true,
    ),
    ("A-b_c.9/Z == 'v'", &[("A-b_c.9/Z", "v")], true),
    ("in == \"x\"", &[("in", "x")], true),
    ("has == \"x\"", &[("has", "x")], true),
    ("all in {\"x\"}", &[("all", "x")], true),
    ("a == 'say \"hi\"'", &[("a", "say \"hi\"")], true),
    ("a == \"it's\"", &[("a", "it's")], true),
    ("a == \"ünï cødé\"", &[("a", "ünï cødé")], true),
    // Negation, precedence, parentheses.
    ("!a == \"x\"", &[], true),
    ("!!a == \"x\"", &[("a", "x")], true),
    ("!!!has(a)", &[("a", "x")], false),
    ("has(a) || has(b) && has(c)", &[("a", "1")], true),
    ("(has(a) || has(b)) && has(c)", &[("a", "1")], false),
    ("has(a) && has(b) || has(c)", &[("c", "1")], true),
    ("has(a) && (has(b) || has(c))", &[("c", "1")], false),
    ("!(has(a) && has(b))", &[("a", "1")], true),
    ("!(has(a) || has(b))", &[("b", "1")], false),
    ("((((has(a)))))", &[("a", "1")], true),
    (
        "has(a) && (b == \"x\" || !c in {\"p\", \"q\"})",
        &[("a", "1"), ("c", "r")],
        true,
    ),
    (
        "has(a) && (b == \"x\" || !c in {\"p\", \"q\"})",
        &[("a", "1"), ("c", "p")],
        false,
    ),
    (
        "a == \"1\" && b == \"2\" && c == \"3\"",
        &[("a", "1"), ("b", "2"), ("c", "3")],
        true,
    ),
    (
        "a == \"1\" && b == \"2\" && c == \"3\"",
        &[("a", "1"), ("b", "2")],
        false,
    ),
    ("global() && has(a)", &[("a", "1")], true),
];

#[test]
fn evaluation_table() {
    let mut failures = Vec::new();
    for (text, pairs, expected) in MATCH_CASES {
        let selector =
            Selector::parse(text).unwrap_or_else(|error| panic!("{text:?} should parse: {error}"));
        if selector.matches(&labels(pairs)) != *expected {
            failures.push(format!("{text:?} on {pairs:?}: expected {expected}"));
        }
    }
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
}

/// (input, column, text the `expected` part must contain)
const ERROR_CASES: &[(&str, usize, &str)] = &[
    ("a = \"x\"", 3, "\"==\""),
    ("has(a) & has(b)", 8, "\"&&\""),
    ("has(a) | has(b)", 8, "\"||\""),
    ("a == x", 6, "a string literal after \"==\""),
    ("a != ", 6, "a string literal after \"!=\""),
    ("a contains x", 12, "a string literal after \"contains\""),
    (
        "a starts with",
        14,
        "a string literal after \"starts with\"",
    ),
    ("a == \"x", 6, "a closing \" to end the string"),
    ("a == 'x", 6, "a closing ' to end the string"),
    ("a", 2, "an operator after label \"a\""),
    ("a b", 3, "an operator after label \"a\""),
    ("a inx {}", 3, "an operator after label \"a\""),
    ("a starts \"x\"", 3, "an operator after label \"a\""),
    ("a)", 2, "an operator after label \"a\""),
    ("a in \"x\"", 6, "\"{\" to start a set after \"in\""),
    (
        "a not in (\"x\")",
        10,
        "\"{\" to start a set after \"not in\"",
    ),
    ("a in {\"x\" \"y\"}", 11, "\",\" or \"}\" in a set"),
    ("a in {,}", 7, "a string literal or \"}\" in a set"),
    ("a in {\"x\"", 10, "\",\" or \"}\" in a set"),
    ("(has(a)", 8, "\")\" to close the \"(\" at column 1"),
    ("has(a))", 7, "\"&&\", \"||\" or the end of the selector"),
    (
        "has(a) has(b)",
        8,
        "\"&&\", \"||\" or the end of the selector",
    ),
    (
        "has(a) &&",
        10,
        "a label, \"(\", \"!\", all(), global() or has()",
    ),
    (
        "|| has(a)",
        1,
        "a label, \"(\", \"!\", all(), global() or has()",
    ),
    ("!", 2, "a label, \"(\", \"!\", all(), global() or has()"),
    ("()", 2, "a label, \"(\", \"!\", all(), global() or has()"),
    (
        "\"x\" == a",
        1,
        "a label, \"(\", \"!\", all(), global() or has()",
    ),
    ("has()", 5, "a label inside has(...)"),
    ("has(a b)", 7, "\")\" to close has("),
    ("all(x)", 5, "\")\" after \"all(\""),
    ("global(", 8, "\")\" after \"global(\""),
    ("$", 1, "a label, a string"),
    (
        "a == \"x\" && b\n== \"y\"",
        14,
        "an operator after label \"b\"",
    ),
    ("ü == \"x\"", 1, "a label, a string"),
    ("a == \"ü\" && %", 13, "a label, a string"),
];

#[test]
fn parse_error_table() {
    let mut failures = Vec::new();
    for (text, column, expected) in ERROR_CASES {
        match Selector::parse(text) {
            Ok(selector) => failures.push(format!("{text:?} parsed as {selector}")),
            Err(error) => {
                if error.column != *column || !error.expected.contains(expected) {
                    failures.push(format!(
                        "{text:?}: got column {} expected {:?}; wanted column {column} containing {expected:?}",
                        error.column, error.expected
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "wrong errors:\n{}",
        failures.join("\n")
    );
}

#[test]
fn error_message_names_column_expectation_and_finding() {
    let error = Selector::parse("a == 7").expect_err("a number is not a string");
    assert_eq!(
        error.to_string(),
        "column 6: expected a string literal after \"==\", found label \"7\""
    );
    let error = Selector::parse("has(a) &&").expect_err("dangling &&");
    assert_eq!(error.found, "end of input");
}

#[test]
fn label_length_limit() {
    let longest = "l".repeat(MAX_LABEL_LENGTH);
    let selector = Selector::parse(&format!("has({longest})")).expect("512 characters are allowed");
    assert!(selector.matches(&labels(&[(longest.as_str(), "")])));
    Selector::parse(&format!("{longest} == \"v\"")).expect("512 characters are allowed");

    let too_long = "l".repeat(MAX_LABEL_LENGTH + 1);
    for text in [
        format!("has({too_long})"),
        format!("x == \"\" || {too_long} == \"v\""),
    ] {
        let error = Selector::parse(&text).expect_err("513 characters are too many");
        assert!(error.expected.contains("at most 512"), "{error}");
        assert_eq!(
            error.column,
            text.find('l').map(|offset| offset + 1).unwrap_or(0)
        );
    }
}

#[test]
fn nesting_limit_is_an_error_not_a_stack_overflow() {
    let fine = format!(
        "{}has(a){}",
        "(".repeat(MAX_NESTING),
        ")".repeat(MAX_NESTING)
    );
    assert!(Selector::parse(&fine).is_ok());
    let hostile = format!("{}has(a){}", "(".repeat(100_000), ")".repeat(100_000));
    let error = Selector::parse(&hostile).expect_err("too deep");
    assert_eq!(error.column, MAX_NESTING + 1);
    let many_negations = format!("{}has(a)", "!".repeat(100_001));
    let selector = Selector::parse(&many_negations).expect("negations do not nest");
    assert_eq!(selector, Selector::parse("!has(a)").unwrap());
}

/// (input, canonical display)
const CANONICAL_CASES: &[(&str, &str)] = &[
    ("", "all()"),
    ("all( )", "all()"),
    ("global( )", "global()"),
    ("has( a )", "has(a)"),
    ("a=='x'", "a == \"x\""),
    ("a!=\"x\"", "a != \"x\""),
    ("a == 'say \"hi\"'", "a == 'say \"hi\"'"),
    ("a in {'y','x','y',}", "a in {\"x\", \"y\"}"),
    ("a notin{}", "a not in {}"),
    ("a startswith 'p'", "a starts with \"p\""),
    ("a   ends   with 'p'", "a ends with \"p\""),
    ("a contains'p'", "a contains \"p\""),
    ("!!has(a)", "has(a)"),
    ("!(!has(a))", "has(a)"),
    ("((has(a)))", "has(a)"),
    ("(has(a) && has(b)) && has(c)", "has(a) && has(b) && has(c)"),
    ("has(a) || (has(b) || has(c))", "has(a) || has(b) || has(c)"),
    ("(has(a) && has(b)) || has(c)", "has(a) && has(b) || has(c)"),
    (
        "has(a) && (has(b) || has(c))",
        "has(a) && (has(b) || has(c))",
    ),
    ("!(has(a) && has(b))", "!(has(a) && has(b))"),
    ("!(a == 'x')", "!a == \"x\""),
    (
        "has(a)&&(b=='x'||!c in{'q','p'})",
        "has(a) && (b == \"x\" || !c in {\"p\", \"q\"})",
    ),
];

#[test]
fn canonical_display_table() {
    for (text, canonical) in CANONICAL_CASES {
        let selector = Selector::parse(text).unwrap_or_else(|error| panic!("{text:?}: {error}"));
        assert_eq!(selector.to_string(), *canonical, "display of {text:?}");
        let reparsed: Selector = canonical
            .parse()
            .unwrap_or_else(|error| panic!("{canonical:?}: {error}"));
        assert_eq!(reparsed, selector, "round trip of {text:?}");
    }
}

#[test]
fn structural_equality() {
    let equal_pairs = [
        ("", "all()"),
        ("a in {'x', 'y'}", "a in {\"y\", \"x\", \"x\"}"),
        ("has(a) && has(b) && has(c)", "has(a) && (has(b) && has(c))"),
        ("!!!has(a)", "!has(a)"),
    ];
    for (left, right) in equal_pairs {
        assert_eq!(
            Selector::parse(left).unwrap(),
            Selector::parse(right).unwrap(),
            "{left} vs {right}"
        );
    }
    let different_pairs = [
        ("has(a) && has(b)", "has(b) && has(a)"),
        ("!a == 'x'", "a != 'x'"),
        ("all()", "global()"),
        ("a in {'x'}", "a not in {'x'}"),
    ];
    for (left, right) in different_pairs {
        assert_ne!(
            Selector::parse(left).unwrap(),
            Selector::parse(right).unwrap(),
            "{left} vs {right}"
        );
    }
}

#[test]
fn contains_global_and_defaults() {
    assert!(Selector::parse("global()").unwrap().contains_global());
    assert!(Selector::parse("has(a) && !(has(b) || global())")
        .unwrap()
        .contains_global());
    assert!(!Selector::parse("has(global) && global == 'x'")
        .unwrap()
        .contains_global());
    assert!(!Selector::all().contains_global());
    assert_eq!(Selector::all(), Selector::parse("").unwrap());
    assert_eq!(Selector::default(), Selector::all());
}

#[test]
fn from_expr_rejects_unwritable_trees_and_normalises() {
    let both_quotes = Expr::Equal {
        label: "a".into(),
        value: "\"'".into(),
    };
    assert!(matches!(
        Selector::from_expr(both_quotes),
        Err(InvalidExpr::Value(_))
    ));
    let bad_label = Expr::Has("a b".into());
    assert!(matches!(
        Selector::from_expr(bad_label),
        Err(InvalidExpr::Label(_))
    ));
    let empty_label = Expr::In {
        label: String::new(),
        values: BTreeSet::new(),
    };
    assert!(matches!(
        Selector::from_expr(empty_label),
        Err(InvalidExpr::Label(_))
    ));

    let nested = Expr::And(vec![
        Expr::Not(Box::new(Expr::Not(Box::new(Expr::Has("a".into()))))),
        Expr::And(vec![Expr::Has("b".into())]),
        Expr::Or(vec![]),
    ]);
    let selector = Selector::from_expr(nested).unwrap();
    assert_eq!(selector.to_string(), "has(a) && has(b) && !all()");
    assert!(!selector.matches(&labels(&[("a", "1"), ("b", "2")])));
}

// ---------------------------------------------------------------------------------------------
// Property tests.

/// A few label names (shared with the label maps so comparisons sometimes hit).
fn label_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["a", "b", "app.kubernetes.io/name", "in", "has", "not"]).prop_map(String::from),
        1 => "[a-zA-Z0-9_./-]{1,20}",
    ]
}

/// Values that can be written as literals, including ones needing single quotes.
fn value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["", "x", "y", "xy", "say \"hi\"", "it's", "ü"]).prop_map(String::from),
        1 => "[a-z \"]{0,6}",
        1 => "[a-z ']{0,6}",
    ]
}

fn leaf_strategy() -> impl Strategy<Value = Expr> {
    let comparison =
        (label_strategy(), value_strategy(), 0..5u8).prop_map(|(label, value, kind)| match kind {
            0 => Expr::Equal { label, value },
            1 => Expr::NotEqual { label, value },
            2 => Expr::Contains { label, value },
            3 => Expr::StartsWith { label, value },
            _ => Expr::EndsWith { label, value },
        });
    let set = (
        label_strategy(),
        prop::collection::btree_set(value_strategy(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(label, values, negated)| {
            if negated {
                Expr::NotIn { label, values }
            } else {
                Expr::In { label, values }
            }
        });
    prop_oneof![
        Just(Expr::All),
        Just(Expr::Global),
        label_strategy().prop_map(Expr::Has),
        comparison,
        set,
    ]
}

/// Random, not necessarily normalised trees (empty and single-operand And/Or, `Not(Not(_))`).
fn expr_strategy() -> impl Strategy<Value = Expr> {
    leaf_strategy().prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|expr| Expr::Not(Box::new(expr))),
            prop::collection::vec(inner.clone(), 0..4).prop_map(Expr::And),
            prop::collection::vec(inner, 0..4).prop_map(Expr::Or),
        ]
    })
}

fn label_map_strategy() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(label_strategy(), value_strategy(), 0..5)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn display_round_trips_and_keeps_meaning(expr in expr_strategy(), maps in prop::collection::vec(label_map_strategy(), 1..6)) {
        let selector = Selector::from_expr(expr.clone()).expect("strategies only build writable trees");
        let text = selector.to_string();
        let reparsed = Selector::parse(&text).map_err(|error| TestCaseError::fail(format!("{text:?}: {error}")))?;
        prop_assert_eq!(&reparsed, &selector, "text {:?}", text);
        prop_assert_eq!(&reparsed.to_string(), &text);
        for map in &maps {
            let expected = expr.matches(map);
            prop_assert_eq!(selector.matches(map), expected, "normalised {:?} on {:?}", text, map);
            prop_assert_eq!(reparsed.matches(map), expected, "reparsed {:?} on {:?}", text, map);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = Selector::parse(&text);
    }

    /// Text built from the language's own alphabet reaches deep into the parser; whatever
    /// parses must print canonically, and errors point inside (or just past) the input.
    #[test]
    fn selector_like_text_never_panics_and_round_trips(
        pieces in prop::collection::vec(
            prop::sample::select(vec![
                "a", "b", " ", "\t", "==", "!=", "!", "&&", "||", "(", ")", "{", "}", ",", "=", "&", "|",
                "in", "not", "notin", "contains", "starts", "ends", "with", "all()", "global()", "has(",
                "has(a)", "\"x\"", "'y'", "\"", "'", "ü",
            ]),
            0..16,
        )
    ) {
        let text: String = pieces.concat();
        match Selector::parse(&text) {
            Ok(selector) => {
                let printed = selector.to_string();
                prop_assert_eq!(Selector::parse(&printed).ok(), Some(selector), "{:?} -> {:?}", text, printed);
            }
            Err(error) => {
                prop_assert!(error.column >= 1 && error.column <= text.chars().count() + 1, "{:?}: {}", text, error);
                prop_assert!(!error.expected.is_empty());
            }
        }
    }
}
