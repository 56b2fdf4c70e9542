//! Calico's label selector language (reference §10): lexer, parser, evaluator.
//!
//! Contract: `Selector::parse` accepts exactly Calico's syntax (the empty string is `all()`) and
//! reports the first error with a 1-based column and what was expected there; parsing never
//! panics, whatever the input. `matches` evaluates over a label map with Calico's semantics
//! (`!=` and `not in` also match when the label is absent). Equality is structural on the
//! normalised tree: `&&`/`||` chains are flattened, `!!x` is `x`, and `{...}` sets ignore order
//! and duplicates — but `!a == "x"` and `a != "x"` stay different trees although they agree on
//! every label map. `Display` prints a canonical form that parses back to an equal selector.

mod ast;
mod lexer;
mod parser;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

pub use ast::Expr;
use ast::Text;
pub use lexer::MAX_LABEL_LENGTH;
pub use parser::MAX_NESTING;

/// A parsed selector. Equality is structural (two spellings of the same expression are equal).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    /// Always normalised and valid (labels and strings are writable in the language).
    expr: Expr,
}

/// Why a selector failed to parse: the 1-based column and what the parser expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: expected {expected}, found {found}")]
pub struct ParseError {
    /// 1-based column counted in characters (the end of input is one past the last character).
    pub column: usize,
    /// What would have been valid at that column.
    pub expected: String,
    /// What was there instead (a token, a character, or "end of input").
    pub found: String,
}

/// Why a hand-built `Expr` cannot become a `Selector`: it could not be written as selector text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidExpr {
    #[error("label {0:?} is not 1-{max} characters of [a-zA-Z0-9_./-]", max = MAX_LABEL_LENGTH)]
    Label(String),
    #[error(
        "value {0:?} contains both quote characters, which no selector string literal can hold"
    )]
    Value(String),
}

impl Selector {
    /// Parses a selector; the empty string is `all()`.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        parser::parse(text).map(|expr| Selector { expr })
    }

    /// The selector that matches everything.
    pub fn all() -> Self {
        Selector { expr: Expr::All }
    }

    /// Builds a selector from a tree, normalising it; fails when the tree has a label or a
    /// string value that selector text cannot express (so `Display` always round-trips).
    pub fn from_expr(expr: Expr) -> Result<Self, InvalidExpr> {
        let mut problem = None;
        expr.visit_texts(&mut |text| {
            if problem.is_some() {
                return;
            }
            match text {
                Text::Label(label) if !lexer::is_valid_label(label) => {
                    problem = Some(InvalidExpr::Label(label.to_string()));
                }
                Text::Value(value) if value.contains('"') && value.contains('\'') => {
                    problem = Some(InvalidExpr::Value(value.to_string()));
                }
                _ => {}
            }
        });
        match problem {
            Some(problem) => Err(problem),
            None => Ok(Selector {
                expr: expr.normalize(),
            }),
        }
    }

    /// The normalised syntax tree.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Evaluates the selector against a label map.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.expr.matches(labels)
    }

    /// True when the expression uses `global()` anywhere (forbidden in IPPool selectors).
    pub fn contains_global(&self) -> bool {
        self.expr.contains_global()
    }
}

impl Default for Selector {
    fn default() -> Self {
        Selector::all()
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.expr, formatter)
    }
}

impl FromStr for Selector {
    type Err = ParseError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Selector::parse(text)
    }
}
