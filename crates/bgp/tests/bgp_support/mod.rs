//! Helpers shared by the BGP test files: hex parsing and byte comparison with a readable diff.
#![allow(dead_code)]

pub mod malformed;

use starling_bgp::codec::{CodecOptions, Message};

/// Parses hex text, ignoring whitespace, `#` comments and `ff*16`-style repetition written as
/// `M` (the 16-byte all-ones marker).
pub fn hex(text: &str) -> Vec<u8> {
    let mut digits = String::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        for word in line.split_whitespace() {
            if word == "M" {
                digits.push_str(&"ff".repeat(16));
            } else {
                digits.push_str(word);
            }
        }
    }
    assert!(digits.len() % 2 == 0, "odd number of hex digits");
    (0..digits.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(&digits[index..index + 2], 16).expect("hex digit"))
        .collect()
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Panics with a side-by-side hex dump (16 bytes a row, differing rows marked) when unequal.
pub fn assert_bytes_eq(actual: &[u8], expected: &[u8], what: &str) {
    if actual == expected {
        return;
    }
    let mut report = format!(
        "{what}: bytes differ (actual {} bytes, expected {} bytes)\n  offset  actual                            expected\n",
        actual.len(),
        expected.len()
    );
    let rows = actual.len().max(expected.len()).div_ceil(16);
    for row in 0..rows {
        let range = |bytes: &[u8]| {
            let start = (row * 16).min(bytes.len());
            let end = (row * 16 + 16).min(bytes.len());
            to_hex(&bytes[start..end])
        };
        let (left, right) = (range(actual), range(expected));
        let marker = if left == right { " " } else { "*" };
        report.push_str(&format!("{marker} {:06x}  {left:<32}  {right}\n", row * 16));
    }
    panic!("{report}");
}

/// Asserts decode(bytes) == message and encode(message) == bytes.
pub fn assert_golden(bytes: &[u8], message: &Message, options: &CodecOptions, what: &str) {
    let decoded = Message::decode(bytes, options).unwrap_or_else(|error| {
        panic!(
            "{what}: decode failed: {error} ({:?})",
            error.notification()
        )
    });
    assert_eq!(&decoded, message, "{what}: decoded value differs");
    let encoded = message
        .encode(options)
        .unwrap_or_else(|error| panic!("{what}: encode failed: {error}"));
    assert_bytes_eq(&encoded, bytes, what);
}
