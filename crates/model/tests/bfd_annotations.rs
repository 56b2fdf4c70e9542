//! The BFD annotations (`starling/bfd-interval`, `starling/bfd-multiplier`): absent means no
//! BFD, values are checked and errors name the object and the annotation.

use std::collections::BTreeMap;
use std::time::Duration;

use starling_model::bgp::BfdSettings;
use starling_model::validate::bgp::bfd_from_annotations;

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

#[test]
fn settings_from_annotations() {
    assert_eq!(
        bfd_from_annotations("BGPPeer", "tor", &annotations(&[])),
        Ok(None)
    );
    assert_eq!(
        bfd_from_annotations(
            "BGPPeer",
            "tor",
            &annotations(&[("starling/bfd-interval", "100ms")])
        ),
        Ok(Some(BfdSettings {
            interval: Duration::from_millis(100),
            multiplier: 3
        }))
    );
    assert_eq!(
        bfd_from_annotations(
            "BGPConfiguration",
            "default",
            &annotations(&[
                ("starling/bfd-interval", " 1s "),
                ("starling/bfd-multiplier", "5")
            ])
        ),
        Ok(Some(BfdSettings {
            interval: Duration::from_secs(1),
            multiplier: 5
        }))
    );
}

#[test]
fn malformed_values_name_the_object_and_annotation() {
    for (pairs, annotation, needle) in [
        (
            vec![("starling/bfd-interval", "fast")],
            "starling/bfd-interval",
            "fast",
        ),
        (
            vec![("starling/bfd-interval", "0s")],
            "starling/bfd-interval",
            "outside",
        ),
        (
            vec![("starling/bfd-interval", "500us")],
            "starling/bfd-interval",
            "outside",
        ),
        (
            vec![("starling/bfd-interval", "2m")],
            "starling/bfd-interval",
            "outside",
        ),
        (
            vec![
                ("starling/bfd-interval", "100ms"),
                ("starling/bfd-multiplier", "0"),
            ],
            "starling/bfd-multiplier",
            "\"0\"",
        ),
        (
            vec![
                ("starling/bfd-interval", "100ms"),
                ("starling/bfd-multiplier", "256"),
            ],
            "starling/bfd-multiplier",
            "256",
        ),
        (
            vec![("starling/bfd-multiplier", "3")],
            "starling/bfd-multiplier",
            "no effect",
        ),
    ] {
        let error = bfd_from_annotations("BGPPeer", "tor", &annotations(&pairs)).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("BGPPeer"), "{text}");
        assert!(text.contains("tor"), "{text}");
        assert!(text.contains(annotation), "{text}");
        assert!(text.contains(needle), "{text}");
    }
}
