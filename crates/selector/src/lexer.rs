//! Tokenizer for the selector language (reference §10, "Lexical").
//!
//! Contract: turns the whole input into a token list ending with `TokenKind::End`, or reports the
//! first lexical error with its byte offset. Whitespace is only space and tab. Word operators
//! (`in`, `not in`, `contains`, `starts with`, `ends with`) are recognised only right after a
//! label, which is why lexing needs to know the previous token. Never panics on any input.

use super::ParseError;

/// Longest label the language accepts, in bytes (all label characters are ASCII).
pub const MAX_LABEL_LENGTH: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    Label(String),
    StringLiteral(String),
    Equal,
    NotEqual,
    Not,
    And,
    Or,
    LeftParen,
    RightParen,
    LeftBrace,
    RightBrace,
    Comma,
    In,
    NotIn,
    Contains,
    StartsWith,
    EndsWith,
    All,
    Global,
    Has(String),
    End,
}

impl TokenKind {
    /// How the token is named in "found ..." parts of error messages.
    pub fn describe(&self) -> String {
        match self {
            TokenKind::Label(label) => format!("label {label:?}"),
            TokenKind::StringLiteral(value) => format!("string {value:?}"),
            TokenKind::Equal => "\"==\"".to_string(),
            TokenKind::NotEqual => "\"!=\"".to_string(),
            TokenKind::Not => "\"!\"".to_string(),
            TokenKind::And => "\"&&\"".to_string(),
            TokenKind::Or => "\"||\"".to_string(),
            TokenKind::LeftParen => "\"(\"".to_string(),
            TokenKind::RightParen => "\")\"".to_string(),
            TokenKind::LeftBrace => "\"{\"".to_string(),
            TokenKind::RightBrace => "\"}\"".to_string(),
            TokenKind::Comma => "\",\"".to_string(),
            TokenKind::In => "\"in\"".to_string(),
            TokenKind::NotIn => "\"not in\"".to_string(),
            TokenKind::Contains => "\"contains\"".to_string(),
            TokenKind::StartsWith => "\"starts with\"".to_string(),
            TokenKind::EndsWith => "\"ends with\"".to_string(),
            TokenKind::All => "all()".to_string(),
            TokenKind::Global => "global()".to_string(),
            TokenKind::Has(label) => format!("has({label})"),
            TokenKind::End => "end of input".to_string(),
        }
    }
}

/// A token and the byte offset where it starts (errors convert it to a column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub offset: usize,
}

pub fn is_label_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'/' | b'-')
}

/// True when `text` is a complete, valid label (used to validate hand-built expressions).
pub fn is_valid_label(text: &str) -> bool {
    !text.is_empty() && text.len() <= MAX_LABEL_LENGTH && text.bytes().all(is_label_char)
}

/// Builds a `ParseError` at a byte offset of `input`, converting it to a 1-based character column.
pub fn error_at(
    input: &str,
    offset: usize,
    expected: impl Into<String>,
    found: impl Into<String>,
) -> ParseError {
    let prefix = input.get(..offset).unwrap_or(input);
    ParseError {
        column: prefix.chars().count() + 1,
        expected: expected.into(),
        found: found.into(),
    }
}

/// Describes the character at `offset` for "found ..." (or "end of input").
fn describe_char_at(input: &str, offset: usize) -> String {
    match input.get(offset..).and_then(|rest| rest.chars().next()) {
        Some(character) => format!("{character:?}"),
        None => "end of input".to_string(),
    }
}

struct Lexer<'a> {
    input: &'a str,
    bytes: &'a [u8],
    position: usize,
    tokens: Vec<Token>,
}

pub fn tokenize(input: &str) -> Result<Vec<Token>, ParseError> {
    let mut lexer = Lexer {
        input,
        bytes: input.as_bytes(),
        position: 0,
        tokens: Vec::new(),
    };
    lexer.run()?;
    Ok(lexer.tokens)
}

impl<'a> Lexer<'a> {
    fn run(&mut self) -> Result<(), ParseError> {
        loop {
            self.skip_whitespace();
            let start = self.position;
            let Some(&byte) = self.bytes.get(start) else {
                self.push(TokenKind::End, start);
                return Ok(());
            };
            let after_label = matches!(
                self.tokens.last(),
                Some(Token {
                    kind: TokenKind::Label(_),
                    ..
                })
            );
            let kind = match byte {
                b'(' => self.single(TokenKind::LeftParen),
                b')' => self.single(TokenKind::RightParen),
                b'{' => self.single(TokenKind::LeftBrace),
                b'}' => self.single(TokenKind::RightBrace),
                b',' => self.single(TokenKind::Comma),
                b'"' | b'\'' => self.string_literal(byte)?,
                b'=' => self.double(b'=', TokenKind::Equal, "\"==\"")?,
                b'&' => self.double(b'&', TokenKind::And, "\"&&\"")?,
                b'|' => self.double(b'|', TokenKind::Or, "\"||\"")?,
                b'!' => {
                    if self.bytes.get(start + 1) == Some(&b'=') {
                        self.position += 2;
                        TokenKind::NotEqual
                    } else {
                        self.single(TokenKind::Not)
                    }
                }
                _ if after_label => self.word_operator()?,
                _ => self.function_or_label()?,
            };
            self.push(kind, start);
        }
    }

    fn push(&mut self, kind: TokenKind, offset: usize) {
        self.tokens.push(Token { kind, offset });
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.bytes.get(self.position), Some(b' ' | b'\t')) {
            self.position += 1;
        }
    }

    fn rest(&self) -> &'a str {
        self.input.get(self.position..).unwrap_or("")
    }

    fn single(&mut self, kind: TokenKind) -> TokenKind {
        self.position += 1;
        kind
    }

    /// Two-character operators whose single-character form is not part of the language.
    fn double(
        &mut self,
        byte: u8,
        kind: TokenKind,
        expected: &str,
    ) -> Result<TokenKind, ParseError> {
        if self.bytes.get(self.position + 1) == Some(&byte) {
            self.position += 2;
            Ok(kind)
        } else {
            Err(error_at(
                self.input,
                self.position,
                format!("{expected} (a lone {:?} is not an operator)", byte as char),
                describe_char_at(self.input, self.position),
            ))
        }
    }

    fn string_literal(&mut self, quote: u8) -> Result<TokenKind, ParseError> {
        let start = self.position;
        let body_start = start + 1;
        let body = self.input.get(body_start..).unwrap_or("");
        match body.find(quote as char) {
            Some(length) => {
                self.position = body_start + length + 1;
                Ok(TokenKind::StringLiteral(
                    body.get(..length).unwrap_or_default().to_string(),
                ))
            }
            None => Err(error_at(
                self.input,
                start,
                format!("a closing {} to end the string", quote as char),
                "end of input",
            )),
        }
    }

    /// Consumes `word` if the input continues with it and a word boundary follows.
    fn take_words(&mut self, words: &[&str]) -> bool {
        let mut cursor = self.position;
        for (index, word) in words.iter().enumerate() {
            let Some(rest) = self.input.get(cursor..) else {
                return false;
            };
            if !rest.starts_with(word) {
                return false;
            }
            cursor += word.len();
            // Spaces (or none at all: "notin") may separate the words of a multi-word operator.
            if index + 1 < words.len() {
                while matches!(self.bytes.get(cursor), Some(b' ' | b'\t')) {
                    cursor += 1;
                }
            }
        }
        if self
            .bytes
            .get(cursor)
            .is_some_and(|&next| is_label_char(next))
        {
            return false;
        }
        self.position = cursor;
        true
    }

    fn word_operator(&mut self) -> Result<TokenKind, ParseError> {
        let candidates: [(&[&str], TokenKind); 5] = [
            (&["contains"], TokenKind::Contains),
            (&["starts", "with"], TokenKind::StartsWith),
            (&["ends", "with"], TokenKind::EndsWith),
            (&["not", "in"], TokenKind::NotIn),
            (&["in"], TokenKind::In),
        ];
        for (words, kind) in candidates {
            if self.take_words(words) {
                return Ok(kind);
            }
        }
        let label = match self.tokens.last() {
            Some(Token {
                kind: TokenKind::Label(label),
                ..
            }) => label.clone(),
            _ => String::new(),
        };
        Err(error_at(
            self.input,
            self.position,
            format!("an operator after label {label:?} (==, !=, in, not in, contains, starts with, ends with)"),
            self.describe_word_at_position(),
        ))
    }

    /// Describes what sits at the current position: a whole label-like word or one character.
    fn describe_word_at_position(&self) -> String {
        let length = self
            .rest()
            .bytes()
            .take_while(|&byte| is_label_char(byte))
            .count();
        if length > 0 {
            format!("{:?}", self.rest().get(..length).unwrap_or_default())
        } else {
            describe_char_at(self.input, self.position)
        }
    }

    fn function_or_label(&mut self) -> Result<TokenKind, ParseError> {
        let rest = self.rest();
        if rest.starts_with("has(") {
            self.position += "has(".len();
            self.skip_whitespace();
            let label = self.label("a label inside has(...)")?;
            self.skip_whitespace();
            self.expect_close_paren("\")\" to close has(")?;
            Ok(TokenKind::Has(label))
        } else if rest.starts_with("all(") {
            self.position += "all(".len();
            self.skip_whitespace();
            self.expect_close_paren("\")\" after \"all(\"")?;
            Ok(TokenKind::All)
        } else if rest.starts_with("global(") {
            self.position += "global(".len();
            self.skip_whitespace();
            self.expect_close_paren("\")\" after \"global(\"")?;
            Ok(TokenKind::Global)
        } else {
            self.label("a label, a string, \"(\", \"!\", all(), global() or has()")
                .map(TokenKind::Label)
        }
    }

    fn expect_close_paren(&mut self, expected: &str) -> Result<(), ParseError> {
        if self.bytes.get(self.position) == Some(&b')') {
            self.position += 1;
            Ok(())
        } else {
            Err(error_at(
                self.input,
                self.position,
                expected,
                self.describe_word_at_position(),
            ))
        }
    }

    fn label(&mut self, expected_when_missing: &str) -> Result<String, ParseError> {
        let start = self.position;
        let length = self
            .rest()
            .bytes()
            .take_while(|&byte| is_label_char(byte))
            .count();
        if length == 0 {
            return Err(error_at(
                self.input,
                start,
                expected_when_missing,
                describe_char_at(self.input, start),
            ));
        }
        if length > MAX_LABEL_LENGTH {
            return Err(error_at(
                self.input,
                start,
                format!("a label of at most {MAX_LABEL_LENGTH} characters"),
                format!("a label of {length} characters"),
            ));
        }
        self.position += length;
        Ok(self
            .input
            .get(start..start + length)
            .unwrap_or_default()
            .to_string())
    }
}
