//! Kubernetes label selectors (`metav1.LabelSelector`) as Calico selector trees, as Calico's
//! `k8sSelectorToCalico` writes them: `matchLabels` → `k == 'v'` (keys sorted),
//! `In`/`NotIn` → `k in {…}` / `k not in {…}`, `Exists` → `has(k)`, `DoesNotExist` → `!has(k)`,
//! all AND-ed; pod selectors start with `projectcalico.org/orchestrator == 'k8s'`.

use std::collections::BTreeSet;

use starling_selector::Expr;

use crate::model::LabelSelector;
use crate::validate::scope::LABEL_ORCHESTRATOR;

/// Kubernetes' qualified name: `[prefix/]name`, name 1-63 of `[A-Za-z0-9._-]` starting and
/// ending alphanumeric, prefix a DNS subdomain of at most 253 characters.
pub fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|prefix| {
        !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|part| {
                !part.is_empty()
                    && part.bytes().all(|byte| {
                        byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-'
                    })
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    });
    prefix_ok && !name.is_empty() && is_label_value(name)
}

/// Kubernetes' label value: empty, or 1-63 of `[A-Za-z0-9._-]` starting and ending
/// alphanumeric.
pub fn is_label_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
            && value
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && value
                .bytes()
                .last()
                .is_some_and(|b| b.is_ascii_alphanumeric()))
}

/// `projectcalico.org/orchestrator == 'k8s'`.
pub fn orchestrator_k8s() -> Expr {
    Expr::Equal {
        label: LABEL_ORCHESTRATOR.to_string(),
        value: "k8s".to_string(),
    }
}

/// The terms of a label selector (no terms: `all()`), or the first problem as
/// (field below the selector, message).
pub fn terms(selector: &LabelSelector) -> Result<Vec<Expr>, (String, String)> {
    let mut terms = Vec::new();
    for (key, value) in &selector.match_labels {
        let field = format!("matchLabels[{key:?}]");
        if !is_label_key(key) {
            return Err((field, format!("{key:?} is not a label key")));
        }
        if !is_label_value(value) {
            return Err((field, format!("{value:?} is not a label value")));
        }
        terms.push(Expr::Equal {
            label: key.clone(),
            value: value.clone(),
        });
    }
    for (index, requirement) in selector.match_expressions.iter().enumerate() {
        let field = format!("matchExpressions[{index}]");
        let key = &requirement.key;
        if !is_label_key(key) {
            return Err((
                format!("{field}.key"),
                format!("{key:?} is not a label key"),
            ));
        }
        for (value_index, value) in requirement.values.iter().enumerate() {
            if !is_label_value(value) {
                return Err((
                    format!("{field}.values[{value_index}]"),
                    format!("{value:?} is not a label value"),
                ));
            }
        }
        let values: BTreeSet<String> = requirement.values.iter().cloned().collect();
        let needs_values = |present: bool| -> Result<(), (String, String)> {
            match (present, values.is_empty()) {
                (true, true) => Err((
                    format!("{field}.values"),
                    format!("{} needs values", requirement.operator),
                )),
                (false, false) => Err((
                    format!("{field}.values"),
                    format!("{} takes no values", requirement.operator),
                )),
                _ => Ok(()),
            }
        };
        terms.push(match requirement.operator.as_str() {
            "In" => {
                needs_values(true)?;
                Expr::In {
                    label: key.clone(),
                    values,
                }
            }
            "NotIn" => {
                needs_values(true)?;
                Expr::NotIn {
                    label: key.clone(),
                    values,
                }
            }
            "Exists" => {
                needs_values(false)?;
                Expr::Has(key.clone())
            }
            "DoesNotExist" => {
                needs_values(false)?;
                Expr::Not(Box::new(Expr::Has(key.clone())))
            }
            other => {
                return Err((
                    format!("{field}.operator"),
                    format!("{other:?} is not an operator (In, NotIn, Exists, DoesNotExist)"),
                ))
            }
        });
    }
    Ok(terms)
}

/// A pod selector: orchestrator `k8s` AND the terms.
pub fn pod_selector(selector: Option<&LabelSelector>) -> Result<Expr, (String, String)> {
    let mut all = vec![orchestrator_k8s()];
    if let Some(selector) = selector {
        all.extend(terms(selector)?);
    }
    Ok(Expr::and(all))
}

/// A namespace selector: `None` when absent, `all()` when empty.
pub fn namespace_selector(
    selector: Option<&LabelSelector>,
) -> Result<Option<Expr>, (String, String)> {
    match selector {
        None => Ok(None),
        Some(selector) if selector.is_empty() => Ok(Some(Expr::All)),
        Some(selector) => Ok(Some(Expr::and(terms(selector)?))),
    }
}
