//! The import-limit annotations of a BGPPeer: absent means no limit, values are checked and
//! errors name the annotation.

use std::collections::BTreeMap;

use starling_model::bgp::{ImportLimit, LimitAction};
use starling_model::validate::bgp::import_limit_from_annotations;

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

#[test]
fn limits_and_actions_from_annotations() {
    assert_eq!(
        import_limit_from_annotations("tor", &annotations(&[])),
        Ok(None)
    );
    assert_eq!(
        import_limit_from_annotations("tor", &annotations(&[("starling.io/import-limit", "500")])),
        Ok(Some(ImportLimit {
            limit: 500,
            action: LimitAction::Disable
        }))
    );
    for (text, action) in [
        ("restart", LimitAction::Restart),
        ("block", LimitAction::Block),
        ("warn", LimitAction::Warn),
        ("disable", LimitAction::Disable),
    ] {
        let parsed = import_limit_from_annotations(
            "tor",
            &annotations(&[
                ("starling.io/import-limit", "10"),
                ("starling.io/import-limit-action", text),
            ]),
        );
        assert_eq!(parsed.unwrap().unwrap().action, action);
    }
}

#[test]
fn bad_values_name_the_annotation() {
    let error =
        import_limit_from_annotations("tor", &annotations(&[("starling.io/import-limit", "lots")]))
            .unwrap_err();
    assert_eq!(
        error.field,
        "metadata.annotations[starling.io/import-limit]"
    );
    assert!(error.reason.contains("\"lots\""), "{error:?}");
    let error = import_limit_from_annotations(
        "tor",
        &annotations(&[
            ("starling.io/import-limit", "10"),
            ("starling.io/import-limit-action", "explode"),
        ]),
    )
    .unwrap_err();
    assert!(
        error.reason.contains("disable, restart, block, warn"),
        "{error:?}"
    );
    let error = import_limit_from_annotations(
        "tor",
        &annotations(&[("starling.io/import-limit-action", "warn")]),
    )
    .unwrap_err();
    assert!(error.reason.contains("no effect"), "{error:?}");
}
