//! Fuzz target: decoding arbitrary bytes as a BGP message must never panic, every error must
//! map to a NOTIFICATION, and anything that decodes must re-encode to bytes that decode again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_bgp::codec::{frame_length, CodecOptions, Message};

fuzz_target!(|bytes: &[u8]| {
    let _ = frame_length(bytes);
    for options in [CodecOptions::FOUR_OCTET, CodecOptions::TWO_OCTET] {
        match Message::decode(bytes, &options) {
            Ok(message) => {
                if let Message::Update(update) = &message {
                    let _ = update.announced();
                    let _ = update.withdrawn();
                }
                if let Ok(encoded) = message.encode(&options) {
                    assert!(Message::decode(&encoded, &options).is_ok());
                }
            }
            Err(error) => {
                let _ = error.notification();
            }
        }
    }
});
