//! Stable-Rust fuzzing of the decoder: many random and mutated inputs, none may panic. Inputs
//! are shaped to get past the header checks (valid marker and length) so the body decoders,
//! where the real complexity is, see most of the cases. The cargo-fuzz target in `fuzz/` runs
//! the same `exercise` logic with coverage guidance.

use proptest::prelude::*;
use starling_bgp::codec::{frame_length, CodecOptions, Message};

/// Decodes with both session flavours; whatever decodes must also re-encode without panicking,
/// and every error must yield its NOTIFICATION.
fn exercise(bytes: &[u8]) {
    let _ = frame_length(bytes);
    for options in [CodecOptions::FOUR_OCTET, CodecOptions::TWO_OCTET] {
        match Message::decode(bytes, &options) {
            Ok(message) => {
                if let Message::Update(update) = &message {
                    let _ = update.announced();
                    let _ = update.withdrawn();
                    let _ = update.end_of_rib_family();
                }
                if let Ok(encoded) = message.encode(&options) {
                    // What we produce must decode again.
                    assert!(
                        Message::decode(&encoded, &options).is_ok(),
                        "re-encoded message does not decode: {message:?}"
                    );
                }
            }
            Err(error) => {
                let notification = error.notification();
                assert!((1..=6).contains(&notification.code), "{error:?}");
            }
        }
    }
}

/// Wraps a body into a message with a correct header.
fn framed(message_type: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0xff; 16];
    let length = (19 + body.len()).min(usize::from(u16::MAX)) as u16;
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes.push(message_type);
    bytes.extend_from_slice(body);
    bytes
}

/// One path attribute with mostly plausible flags and types and an arbitrary value.
fn attribute() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            Just(0x40u8),
            Just(0x80),
            Just(0xc0),
            Just(0xd0),
            Just(0x50),
            any::<u8>()
        ],
        prop_oneof![1u8..=18, Just(32), any::<u8>()],
        proptest::collection::vec(any::<u8>(), 0..40),
        any::<bool>(),
    )
        .prop_map(|(flags, type_code, value, lie_about_length)| {
            let mut bytes = vec![flags, type_code];
            let length = if lie_about_length {
                value.len() + 3
            } else {
                value.len()
            };
            if flags & 0x10 != 0 {
                bytes.extend_from_slice(&(length as u16).to_be_bytes());
            } else {
                bytes.push(length as u8);
            }
            bytes.extend_from_slice(&value);
            bytes
        })
}

fn update_body() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(any::<u8>(), 0..12),
        proptest::collection::vec(attribute(), 0..8),
        proptest::collection::vec(any::<u8>(), 0..12),
    )
        .prop_map(|(withdrawn, attributes, nlri)| {
            let attributes: Vec<u8> = attributes.concat();
            let mut body = (withdrawn.len() as u16).to_be_bytes().to_vec();
            body.extend_from_slice(&withdrawn);
            body.extend_from_slice(&(attributes.len() as u16).to_be_bytes());
            body.extend_from_slice(&attributes);
            body.extend_from_slice(&nlri);
            body
        })
}

fn open_body() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(any::<u8>(), 9),
        proptest::collection::vec(
            (
                prop_oneof![Just(2u8), any::<u8>()],
                proptest::collection::vec(any::<u8>(), 0..30),
            ),
            0..4,
        ),
    )
        .prop_map(|(fixed, parameters)| {
            let mut parameter_bytes = Vec::new();
            for (kind, value) in parameters {
                parameter_bytes.push(kind);
                parameter_bytes.push(value.len() as u8);
                parameter_bytes.extend_from_slice(&value);
            }
            let mut body = fixed;
            body.push(parameter_bytes.len() as u8);
            body.extend_from_slice(&parameter_bytes);
            body
        })
}

/// Valid messages to mutate.
const SEEDS: &[&str] = &[
    "ffffffffffffffffffffffffffffffff003b0104fc0000f00a0000011e021c010400010001010400020001020040068078000101804104 0000fc00",
    "ffffffffffffffffffffffffffffffff0057020000003840010100400206020100 00fc01400304 0a00000280040400000000400504000000 64c0080 4fc000064c0200c0000fc00000000010000 00021a0a01000010c0a8",
    "ffffffffffffffffffffffffffffffff0054020000003d800e2c000201202001 0db8000000000000000000000001fe80000000000000000000000000000100302001 0db8000140010100400200400504 00000064",
    "ffffffffffffffffffffffffffffffff001d0200000006800f03000201",
];

fn seed(index: usize) -> Vec<u8> {
    let text: String = SEEDS[index % SEEDS.len()].split_whitespace().collect();
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        exercise(&bytes);
    }

    #[test]
    fn framed_arbitrary_bodies_never_panic(
        message_type in 0u8..=6,
        body in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        exercise(&framed(message_type, &body));
    }

    #[test]
    fn structured_updates_never_panic(body in update_body()) {
        exercise(&framed(2, &body));
    }

    #[test]
    fn structured_opens_never_panic(body in open_body()) {
        exercise(&framed(1, &body));
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        which in 0usize..SEEDS.len(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = seed(which);
        for (position, value) in edits {
            // Keep the header valid so the body decoders are exercised.
            let at = 19 + position.index(bytes.len() - 19);
            bytes[at] = value;
        }
        if truncate {
            let keep = 19 + cut.index(bytes.len() - 19);
            bytes.truncate(keep);
            let length = (bytes.len() as u16).to_be_bytes();
            bytes[16] = length[0];
            bytes[17] = length[1];
        }
        exercise(&bytes);
    }
}

#[test]
fn seeds_are_valid() {
    for index in 0..SEEDS.len() {
        let bytes = seed(index);
        assert!(
            Message::decode(&bytes, &CodecOptions::FOUR_OCTET).is_ok(),
            "seed {index}"
        );
    }
}
