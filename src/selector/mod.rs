//! Calico's label selector language (reference §10): lexer, parser, evaluator.
//!
//! PLACEHOLDER API: the real implementation replaces this file's internals; the public
//! surface below (`Selector::parse`, `matches`, `all`, `contains_global`, `Display`,
//! `FromStr`, `ParseError { column, expected }`) is what the rest of the crate codes against.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A parsed selector. Equality is structural (two spellings of the same expression are equal).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    source: String,
}

/// Why a selector failed to parse: the 1-based column and what the parser expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: expected {expected}")]
pub struct ParseError {
    pub column: usize,
    pub expected: String,
}

impl Selector {
    /// Parses a selector; the empty string is `all()`.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        Ok(Selector {
            source: text.trim().to_string(),
        })
    }

    /// The selector that matches everything.
    pub fn all() -> Self {
        Selector {
            source: "all()".to_string(),
        }
    }

    /// Evaluates the selector against a label map.
    pub fn matches(&self, _labels: &BTreeMap<String, String>) -> bool {
        true
    }

    /// True when the expression uses `global()` anywhere (forbidden in IPPool selectors).
    pub fn contains_global(&self) -> bool {
        self.source.contains("global(")
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for Selector {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}
