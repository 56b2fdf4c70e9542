//! Syntax tree of a selector: evaluation over a label map, normalisation and canonical printing.
//!
//! Contract: `Expr` is plain data (anyone may build one); `normalize` puts it in the canonical
//! shape the parser produces (n-ary `And`/`Or` with at least two operands and no operand of the
//! same kind, no double negation), so structural equality of normalised trees is the selector
//! equality. `Display` prints with the fewest parentheses that keep the structure, and for a
//! normalised, valid tree the output parses back to an equal tree.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A label or a string value found in a tree (see `Expr::visit_texts`).
pub(crate) enum Text<'a> {
    Label(&'a str),
    Value(&'a str),
}

/// One selector expression. Sets are `BTreeSet`s: order and duplicates in `{...}` do not matter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Expr {
    /// `all()`: always true.
    All,
    /// `global()`: always true; only meaningful for network-set selectors.
    Global,
    /// `has(label)`: the label is present.
    Has(String),
    /// `label == "value"`: present and equal.
    Equal { label: String, value: String },
    /// `label != "value"`: absent or different.
    NotEqual { label: String, value: String },
    /// `label contains "value"`: present and the value is a substring.
    Contains { label: String, value: String },
    /// `label starts with "value"`: present and prefixed by the value.
    StartsWith { label: String, value: String },
    /// `label ends with "value"`: present and suffixed by the value.
    EndsWith { label: String, value: String },
    /// `label in {...}`: present and its value is in the set (an empty set never matches).
    In {
        label: String,
        values: BTreeSet<String>,
    },
    /// `label not in {...}`: absent or its value is not in the set.
    NotIn {
        label: String,
        values: BTreeSet<String>,
    },
    /// `!expr`.
    Not(Box<Expr>),
    /// `a && b && ...` (an empty conjunction is true).
    And(Vec<Expr>),
    /// `a || b || ...` (an empty disjunction is false).
    Or(Vec<Expr>),
}

impl Expr {
    /// Evaluates the expression; comparisons are exact and case-sensitive.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Expr::All | Expr::Global => true,
            Expr::Has(label) => labels.contains_key(label),
            Expr::Equal { label, value } => labels.get(label) == Some(value),
            Expr::NotEqual { label, value } => labels.get(label) != Some(value),
            Expr::Contains { label, value } => labels
                .get(label)
                .is_some_and(|actual| actual.contains(value.as_str())),
            Expr::StartsWith { label, value } => labels
                .get(label)
                .is_some_and(|actual| actual.starts_with(value.as_str())),
            Expr::EndsWith { label, value } => labels
                .get(label)
                .is_some_and(|actual| actual.ends_with(value.as_str())),
            Expr::In { label, values } => labels
                .get(label)
                .is_some_and(|actual| values.contains(actual)),
            Expr::NotIn { label, values } => !labels
                .get(label)
                .is_some_and(|actual| values.contains(actual)),
            Expr::Not(inner) => !inner.matches(labels),
            Expr::And(operands) => operands.iter().all(|operand| operand.matches(labels)),
            Expr::Or(operands) => operands.iter().any(|operand| operand.matches(labels)),
        }
    }

    /// True when `global()` occurs anywhere in the tree.
    pub fn contains_global(&self) -> bool {
        match self {
            Expr::Global => true,
            Expr::Not(inner) => inner.contains_global(),
            Expr::And(operands) | Expr::Or(operands) => operands.iter().any(Expr::contains_global),
            _ => false,
        }
    }

    /// `!expr`, cancelling a double negation (the grammar says an even number of `!` cancels).
    pub fn negate(self) -> Expr {
        match self {
            Expr::Not(inner) => *inner,
            other => Expr::Not(Box::new(other)),
        }
    }

    /// Conjunction of normalised operands, flattening nested `And`s; one operand is itself.
    pub fn and(operands: Vec<Expr>) -> Expr {
        Self::join(operands, true)
    }

    /// Disjunction of normalised operands, flattening nested `Or`s; one operand is itself.
    pub fn or(operands: Vec<Expr>) -> Expr {
        Self::join(operands, false)
    }

    fn join(operands: Vec<Expr>, conjunction: bool) -> Expr {
        let mut flat = Vec::with_capacity(operands.len());
        for operand in operands {
            match (operand, conjunction) {
                (Expr::And(inner), true) | (Expr::Or(inner), false) => flat.extend(inner),
                (other, _) => flat.push(other),
            }
        }
        match (flat.len(), conjunction) {
            (1, _) => flat.pop().unwrap_or(Expr::All),
            // The language has no "false" literal; `!all()` is its canonical spelling.
            (0, true) => Expr::All,
            (0, false) => Expr::Not(Box::new(Expr::All)),
            (_, true) => Expr::And(flat),
            (_, false) => Expr::Or(flat),
        }
    }

    /// The canonical form of this tree (see the module contract); evaluation is unchanged.
    pub fn normalize(self) -> Expr {
        match self {
            Expr::Not(inner) => inner.normalize().negate(),
            Expr::And(operands) => Expr::and(operands.into_iter().map(Expr::normalize).collect()),
            Expr::Or(operands) => Expr::or(operands.into_iter().map(Expr::normalize).collect()),
            leaf => leaf,
        }
    }

    /// Calls `visit` with every label and string value in the tree, for validation.
    pub(crate) fn visit_texts<'a>(&'a self, visit: &mut impl FnMut(Text<'a>)) {
        match self {
            Expr::All | Expr::Global => {}
            Expr::Has(label) => visit(Text::Label(label)),
            Expr::Equal { label, value }
            | Expr::NotEqual { label, value }
            | Expr::Contains { label, value }
            | Expr::StartsWith { label, value }
            | Expr::EndsWith { label, value } => {
                visit(Text::Label(label));
                visit(Text::Value(value));
            }
            Expr::In { label, values } | Expr::NotIn { label, values } => {
                visit(Text::Label(label));
                values.iter().for_each(|value| visit(Text::Value(value)));
            }
            Expr::Not(inner) => inner.visit_texts(visit),
            Expr::And(operands) | Expr::Or(operands) => operands
                .iter()
                .for_each(|operand| operand.visit_texts(visit)),
        }
    }

    /// Binding strength when printing: `||` < `&&` < `!` and atoms.
    fn precedence(&self) -> u8 {
        match self {
            Expr::Or(_) => 1,
            Expr::And(_) => 2,
            _ => 3,
        }
    }
}

/// Writes a string literal: `"` quotes unless the value contains `"`, then `'`.
///
/// A value containing both quote kinds cannot be written in the language (there are no escapes)
/// and the parser can never produce one; `Selector::from_expr` rejects such trees, and a raw
/// `Expr` holding one prints with `"` quotes (so that output does not parse back).
fn write_string(formatter: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    let quote = if value.contains('"') { '\'' } else { '"' };
    write!(formatter, "{quote}{value}{quote}")
}

/// Writes an operand, parenthesised when it binds no tighter than its parent operator.
fn write_operand(
    formatter: &mut fmt::Formatter<'_>,
    operand: &Expr,
    parent_precedence: u8,
) -> fmt::Result {
    if operand.precedence() <= parent_precedence {
        write!(formatter, "({operand})")
    } else {
        write!(formatter, "{operand}")
    }
}

fn write_set(formatter: &mut fmt::Formatter<'_>, values: &BTreeSet<String>) -> fmt::Result {
    formatter.write_str("{")?;
    for (index, value) in values.iter().enumerate() {
        if index > 0 {
            formatter.write_str(", ")?;
        }
        write_string(formatter, value)?;
    }
    formatter.write_str("}")
}

impl fmt::Display for Expr {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let comparison =
            |formatter: &mut fmt::Formatter<'_>, label: &str, operator: &str, value: &str| {
                write!(formatter, "{label} {operator} ")?;
                write_string(formatter, value)
            };
        match self {
            Expr::All => formatter.write_str("all()"),
            Expr::Global => formatter.write_str("global()"),
            Expr::Has(label) => write!(formatter, "has({label})"),
            Expr::Equal { label, value } => comparison(formatter, label, "==", value),
            Expr::NotEqual { label, value } => comparison(formatter, label, "!=", value),
            Expr::Contains { label, value } => comparison(formatter, label, "contains", value),
            Expr::StartsWith { label, value } => comparison(formatter, label, "starts with", value),
            Expr::EndsWith { label, value } => comparison(formatter, label, "ends with", value),
            Expr::In { label, values } => {
                write!(formatter, "{label} in ")?;
                write_set(formatter, values)
            }
            Expr::NotIn { label, values } => {
                write!(formatter, "{label} not in ")?;
                write_set(formatter, values)
            }
            Expr::Not(inner) => {
                formatter.write_str("!")?;
                // `!!x` would parse as `x`, so a (non-normalised) double negation keeps parentheses.
                if matches!(**inner, Expr::Not(_)) {
                    write!(formatter, "({inner})")
                } else {
                    write_operand(formatter, inner, 2)
                }
            }
            Expr::And(operands) | Expr::Or(operands) => {
                let (separator, precedence) = if matches!(self, Expr::And(_)) {
                    (" && ", 2)
                } else {
                    (" || ", 1)
                };
                if operands.is_empty() {
                    return formatter.write_str(if precedence == 2 { "all()" } else { "!all()" });
                }
                for (index, operand) in operands.iter().enumerate() {
                    if index > 0 {
                        formatter.write_str(separator)?;
                    }
                    write_operand(formatter, operand, precedence)?;
                }
                Ok(())
            }
        }
    }
}
