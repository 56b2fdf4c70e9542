//! Recursive-descent parser for the selector grammar (reference §10, "Grammar").
//!
//! Contract: consumes the token list from the lexer and returns a normalised `Expr` (see
//! `ast`), or the first error with the column of the offending token and what was expected
//! there. The empty input is `all()`. Recursion depth is bounded (`MAX_NESTING`) so hostile
//! input such as thousands of `(` cannot overflow the stack.

use std::collections::BTreeSet;

use super::ast::Expr;
use super::lexer::{error_at, tokenize, Token, TokenKind};
use super::ParseError;

/// Deepest parenthesis nesting accepted; real selectors use a handful.
pub const MAX_NESTING: usize = 100;

pub fn parse(input: &str) -> Result<Expr, ParseError> {
    let tokens = tokenize(input)?;
    let mut parser = Parser {
        input,
        tokens,
        position: 0,
        depth: 0,
    };
    if parser.peek() == &TokenKind::End {
        return Ok(Expr::All);
    }
    let expr = parser.or_expression()?;
    if parser.peek() != &TokenKind::End {
        return Err(parser.error_here("\"&&\", \"||\" or the end of the selector"));
    }
    Ok(expr)
}

struct Parser<'a> {
    input: &'a str,
    tokens: Vec<Token>,
    position: usize,
    depth: usize,
}

/// Always-present end token used if the cursor ever runs past the list.
const END: TokenKind = TokenKind::End;

impl Parser<'_> {
    fn peek(&self) -> &TokenKind {
        self.tokens
            .get(self.position)
            .map_or(&END, |token| &token.kind)
    }

    fn offset(&self) -> usize {
        self.tokens
            .get(self.position)
            .map_or(self.input.len(), |token| token.offset)
    }

    /// Returns the current token and moves past it (never past `End`).
    fn advance(&mut self) -> TokenKind {
        let kind = self.peek().clone();
        if kind != TokenKind::End {
            self.position += 1;
        }
        kind
    }

    fn error_here(&self, expected: impl Into<String>) -> ParseError {
        error_at(self.input, self.offset(), expected, self.peek().describe())
    }

    fn or_expression(&mut self) -> Result<Expr, ParseError> {
        let mut operands = vec![self.and_expression()?];
        while self.peek() == &TokenKind::Or {
            self.advance();
            operands.push(self.and_expression()?);
        }
        Ok(Expr::or(operands))
    }

    fn and_expression(&mut self) -> Result<Expr, ParseError> {
        let mut operands = vec![self.unary()?];
        while self.peek() == &TokenKind::And {
            self.advance();
            operands.push(self.unary()?);
        }
        Ok(Expr::and(operands))
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        let mut negated = false;
        while self.peek() == &TokenKind::Not {
            self.advance();
            negated = !negated;
        }
        let atom = self.atom()?;
        Ok(if negated { atom.negate() } else { atom })
    }

    fn atom(&mut self) -> Result<Expr, ParseError> {
        let start_offset = self.offset();
        match self.peek().clone() {
            TokenKind::All => {
                self.advance();
                Ok(Expr::All)
            }
            TokenKind::Global => {
                self.advance();
                Ok(Expr::Global)
            }
            TokenKind::Has(label) => {
                self.advance();
                Ok(Expr::Has(label))
            }
            TokenKind::Label(label) => {
                self.advance();
                self.comparison(label)
            }
            TokenKind::LeftParen => {
                if self.depth >= MAX_NESTING {
                    return Err(
                        self.error_here(format!("at most {MAX_NESTING} nested parentheses"))
                    );
                }
                self.advance();
                self.depth += 1;
                let inner = self.or_expression()?;
                self.depth -= 1;
                if self.peek() != &TokenKind::RightParen {
                    let open_column = error_at(self.input, start_offset, "", "").column;
                    return Err(self.error_here(format!(
                        "\"&&\", \"||\" or \")\" to close the \"(\" at column {open_column}"
                    )));
                }
                self.advance();
                Ok(inner)
            }
            _ => Err(self.error_here("a label, \"(\", \"!\", all(), global() or has()")),
        }
    }

    /// Parses the operator and operand that must follow a label.
    fn comparison(&mut self, label: String) -> Result<Expr, ParseError> {
        let operator = self.peek().clone();
        let make: fn(String, String) -> Expr = match operator {
            TokenKind::Equal => |label, value| Expr::Equal { label, value },
            TokenKind::NotEqual => |label, value| Expr::NotEqual { label, value },
            TokenKind::Contains => |label, value| Expr::Contains { label, value },
            TokenKind::StartsWith => |label, value| Expr::StartsWith { label, value },
            TokenKind::EndsWith => |label, value| Expr::EndsWith { label, value },
            TokenKind::In | TokenKind::NotIn => {
                self.advance();
                let values = self.set_literal(&operator)?;
                return Ok(if operator == TokenKind::In {
                    Expr::In { label, values }
                } else {
                    Expr::NotIn { label, values }
                });
            }
            _ => {
                return Err(self.error_here(format!(
                    "an operator after label {label:?} (==, !=, in, not in, contains, starts with, ends with)"
                )))
            }
        };
        self.advance();
        match self.peek().clone() {
            TokenKind::StringLiteral(value) => {
                self.advance();
                Ok(make(label, value))
            }
            _ => Err(self.error_here(format!("a string literal after {}", operator.describe()))),
        }
    }

    /// `{` [ string ( "," string )* [","] ] `}`
    fn set_literal(&mut self, operator: &TokenKind) -> Result<BTreeSet<String>, ParseError> {
        if self.peek() != &TokenKind::LeftBrace {
            return Err(self.error_here(format!(
                "\"{{\" to start a set after {}",
                operator.describe()
            )));
        }
        self.advance();
        let mut values = BTreeSet::new();
        loop {
            match self.peek().clone() {
                TokenKind::RightBrace => {
                    self.advance();
                    return Ok(values);
                }
                TokenKind::StringLiteral(value) => {
                    self.advance();
                    values.insert(value);
                    match self.peek() {
                        TokenKind::Comma => {
                            self.advance();
                        }
                        TokenKind::RightBrace => {}
                        _ => return Err(self.error_here("\",\" or \"}\" in a set")),
                    }
                }
                _ => return Err(self.error_here("a string literal or \"}\" in a set")),
            }
        }
    }
}
