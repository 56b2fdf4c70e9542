//! Namespaced and derived selectors as Calico's syncer builds them (reference §2.4,
//! `updateprocessors/{rules,networkpolicyprocessor,globalnetworkpolicyprocessor}.go`): every
//! selector of a policy becomes cluster-wide, so one selector index serves every policy.
//!
//! - NetworkPolicy: `(<selector>) && projectcalico.org/namespace == '<ns>'`, AND the
//!   service-account selector with its keys prefixed `pcsa.`.
//! - GlobalNetworkPolicy: AND the namespace selector with keys prefixed `pcns.` (`all()` there
//!   means "in some namespace"), and the service-account selector likewise.
//! - Rule sides: `namespaceSelector` keys prefixed `pcns.` (`all()` = any namespace, `global()`
//!   = no namespace), in a namespaced policy the own namespace when there is none;
//!   `serviceAccounts` names and `pcsa.` selector; the namespace part is added as soon as any
//!   selector, notSelector or namespaceSelector is used. `notSelector` itself is left as written.

use std::collections::BTreeSet;

use starling_selector::{Expr, Selector};

pub const LABEL_NAMESPACE: &str = "projectcalico.org/namespace";
pub const LABEL_ORCHESTRATOR: &str = "projectcalico.org/orchestrator";
pub const LABEL_SERVICE_ACCOUNT: &str = "projectcalico.org/serviceaccount";
/// Namespace labels reach endpoints with this prefix (through the `kns.` profile).
pub const NAMESPACE_LABEL_PREFIX: &str = "pcns.";
/// Service-account labels reach endpoints with this prefix (through the `ksa.` profile).
pub const SERVICE_ACCOUNT_LABEL_PREFIX: &str = "pcsa.";
/// The label carrying the namespace's or service account's own name (under the prefixes).
pub const NAME_LABEL: &str = "projectcalico.org/name";

/// Every label of the tree prefixed.
pub fn prefix_labels(expr: &Expr, prefix: &str) -> Expr {
    let label = |label: &String| format!("{prefix}{label}");
    match expr {
        Expr::All => Expr::All,
        Expr::Global => Expr::Global,
        Expr::Has(name) => Expr::Has(label(name)),
        Expr::Equal { label: l, value } => Expr::Equal {
            label: label(l),
            value: value.clone(),
        },
        Expr::NotEqual { label: l, value } => Expr::NotEqual {
            label: label(l),
            value: value.clone(),
        },
        Expr::Contains { label: l, value } => Expr::Contains {
            label: label(l),
            value: value.clone(),
        },
        Expr::StartsWith { label: l, value } => Expr::StartsWith {
            label: label(l),
            value: value.clone(),
        },
        Expr::EndsWith { label: l, value } => Expr::EndsWith {
            label: label(l),
            value: value.clone(),
        },
        Expr::In { label: l, values } => Expr::In {
            label: label(l),
            values: values.clone(),
        },
        Expr::NotIn { label: l, values } => Expr::NotIn {
            label: label(l),
            values: values.clone(),
        },
        Expr::Not(inner) => Expr::Not(Box::new(prefix_labels(inner, prefix))),
        Expr::And(operands) => Expr::And(
            operands
                .iter()
                .map(|operand| prefix_labels(operand, prefix))
                .collect(),
        ),
        Expr::Or(operands) => Expr::Or(
            operands
                .iter()
                .map(|operand| prefix_labels(operand, prefix))
                .collect(),
        ),
    }
}

/// `all()` and `global()` replaced (Calico replaces them in the text of prefixed selectors).
fn replace_all_global(expr: Expr, all: &Expr, global: Option<&Expr>) -> Expr {
    match expr {
        Expr::All => all.clone(),
        Expr::Global => match global {
            Some(global) => global.clone(),
            None => Expr::Global,
        },
        Expr::Not(inner) => Expr::Not(Box::new(replace_all_global(*inner, all, global))),
        Expr::And(operands) => Expr::And(
            operands
                .into_iter()
                .map(|operand| replace_all_global(operand, all, global))
                .collect(),
        ),
        Expr::Or(operands) => Expr::Or(
            operands
                .into_iter()
                .map(|operand| replace_all_global(operand, all, global))
                .collect(),
        ),
        leaf => leaf,
    }
}

/// Conjunction that leaves out `all()` operands (so scoping `all()` reads as the scope alone).
pub fn and(operands: Vec<Expr>) -> Expr {
    let kept: Vec<Expr> = operands
        .into_iter()
        .filter(|operand| *operand != Expr::All)
        .collect();
    Expr::and(kept)
}

pub fn in_namespace(namespace: &str) -> Expr {
    Expr::Equal {
        label: LABEL_NAMESPACE.to_string(),
        value: namespace.to_string(),
    }
}

fn has(label: &str) -> Expr {
    Expr::Has(label.to_string())
}

/// A namespace selector as an endpoint selector over `pcns.` labels (rules: `all()` = any
/// namespace, `global()` = none).
pub fn namespace_selector(selector: &Selector) -> Expr {
    let prefixed = prefix_labels(selector.expr(), NAMESPACE_LABEL_PREFIX);
    let not_namespaced = Expr::Not(Box::new(has(LABEL_NAMESPACE)));
    replace_all_global(prefixed, &has(LABEL_NAMESPACE), Some(&not_namespaced))
}

/// A GlobalNetworkPolicy's `namespaceSelector` (only `all()` is replaced there).
pub fn policy_namespace_selector(selector: &Selector) -> Expr {
    let prefixed = prefix_labels(selector.expr(), NAMESPACE_LABEL_PREFIX);
    replace_all_global(prefixed, &has(LABEL_NAMESPACE), None)
}

/// A policy's `serviceAccountSelector`; in a GlobalNetworkPolicy `all()` means "has a
/// service account".
pub fn policy_service_account_selector(selector: &Selector, global: bool) -> Expr {
    let prefixed = prefix_labels(selector.expr(), SERVICE_ACCOUNT_LABEL_PREFIX);
    if global {
        replace_all_global(prefixed, &has(LABEL_SERVICE_ACCOUNT), None)
    } else {
        prefixed
    }
}

/// A rule's `serviceAccounts`: `pcsa.` selector AND `projectcalico.org/serviceaccount in
/// {names}`; `None` when neither is given.
pub fn service_accounts(names: &[String], selector: Option<&Selector>) -> Option<Expr> {
    let mut parts = Vec::new();
    if let Some(selector) = selector {
        parts.push(prefix_labels(selector.expr(), SERVICE_ACCOUNT_LABEL_PREFIX));
    }
    if !names.is_empty() {
        parts.push(Expr::In {
            label: LABEL_SERVICE_ACCOUNT.to_string(),
            values: names.iter().cloned().collect::<BTreeSet<_>>(),
        });
    }
    (!parts.is_empty()).then(|| Expr::and(parts))
}

/// The parsed parts of one rule side that decide its endpoint selector.
pub struct EntityParts<'a> {
    pub selector: Option<&'a Selector>,
    pub not_selector: Option<&'a Selector>,
    pub namespace_selector: Option<&'a Selector>,
    pub service_accounts: Option<Expr>,
}

/// The cluster-wide selector of a rule side (`getEndpointSelector`), `None` when the side
/// matches by address only. `namespace` is the policy's namespace (`None`: global).
pub fn entity_selector(parts: EntityParts<'_>, namespace: Option<&str>) -> Option<Expr> {
    let namespace_part = match (parts.namespace_selector, namespace) {
        (Some(selector), _) => Some(namespace_selector(selector)),
        (None, Some(namespace)) => Some(in_namespace(namespace)),
        (None, None) => None,
    };
    let mut selectors = Vec::new();
    if let Some(service_accounts) = parts.service_accounts {
        selectors.push(service_accounts);
    }
    if let Some(selector) = parts.selector {
        selectors.push(selector.expr().clone());
    }
    let combined = (!selectors.is_empty()).then(|| Expr::and(selectors));
    let scoped =
        combined.is_some() || parts.not_selector.is_some() || parts.namespace_selector.is_some();
    match (namespace_part, combined) {
        (Some(namespace_part), Some(combined)) if scoped => {
            Some(and(vec![namespace_part, combined]))
        }
        (Some(namespace_part), None) if scoped => Some(namespace_part),
        (_, combined) => combined,
    }
}
