//! `starling policy explain` on the wire: the compiler's [`Explanation`] as JSON the control
//! socket, the CLI and the lab share (`{"verdict":"allow","egress":{...},"ingress":null}`).

use serde::{Deserialize, Serialize};
use starling_policy::explain::{Decision, Explanation, Reason, Verdict};

/// What decided one side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReasonView {
    Rule {
        tier: String,
        policy: String,
        rule: usize,
        action: String,
    },
    TierDefault {
        tier: String,
    },
    Profile {
        profile: String,
        rule: usize,
    },
    NoProfileAllowed,
}

/// One local endpoint's decision in one direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionView {
    /// The node whose program decided.
    pub node: String,
    pub endpoint: String,
    pub verdict: String,
    pub reason: ReasonView,
}

/// The answer of one node: its own endpoints' sides (`None` for a side it does not police).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainView {
    pub verdict: String,
    pub egress: Option<DecisionView>,
    pub ingress: Option<DecisionView>,
    /// The human rendering, with the non-terminal steps (Log, Pass).
    pub text: String,
}

/// A node's answer on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExplainReply {
    Answer(Box<ExplainView>),
    Error { error: String },
}

pub fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Allow => "allow",
        Verdict::Deny => "deny",
    }
}

fn reason_view(reason: &Reason) -> ReasonView {
    match reason {
        Reason::Rule {
            tier,
            policy,
            index,
            action,
        } => ReasonView::Rule {
            tier: tier.clone(),
            policy: policy.to_string(),
            rule: *index,
            action: format!("{action:?}"),
        },
        Reason::TierDefault { tier } => ReasonView::TierDefault { tier: tier.clone() },
        Reason::Profile { profile, index } => ReasonView::Profile {
            profile: profile.clone(),
            rule: *index,
        },
        Reason::NoProfileAllowed => ReasonView::NoProfileAllowed,
    }
}

fn decision_view(node: &str, decision: &Decision) -> DecisionView {
    DecisionView {
        node: node.to_string(),
        endpoint: decision.endpoint.clone(),
        verdict: verdict_name(decision.verdict).to_string(),
        reason: reason_view(&decision.reason),
    }
}

impl ExplainView {
    pub fn new(node: &str, explanation: &Explanation) -> ExplainView {
        ExplainView {
            verdict: verdict_name(explanation.verdict).to_string(),
            egress: explanation.egress.as_ref().map(|d| decision_view(node, d)),
            ingress: explanation.ingress.as_ref().map(|d| decision_view(node, d)),
            text: explanation.to_string(),
        }
    }

    /// Both sides of a flow between two nodes: the source node's egress and the destination
    /// node's ingress (either may be absent when its endpoint is not a workload).
    pub fn combine(source_side: ExplainView, destination_side: ExplainView) -> ExplainView {
        let egress = source_side.egress;
        let ingress = destination_side.ingress;
        let denied = [&egress, &ingress]
            .into_iter()
            .flatten()
            .any(|decision| decision.verdict == "deny");
        let verdict = if denied { "denied" } else { "allowed" };
        let text = combine_text(&source_side.text, &destination_side.text, verdict);
        ExplainView {
            verdict: if denied { "deny" } else { "allow" }.to_string(),
            egress,
            ingress,
            text,
        }
    }
}

/// The header (with the combined verdict), the egress lines of the source node's text and
/// the ingress lines of the destination node's (the layout of `Explanation`'s Display).
fn combine_text(source: &str, destination: &str, verdict: &str) -> String {
    let split = |text: &str| -> (String, String, String) {
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default().to_string();
        let (mut egress, mut ingress, mut in_ingress) = (String::new(), String::new(), false);
        for line in lines {
            in_ingress |= line.starts_with("  ingress of ");
            let part = if in_ingress {
                &mut ingress
            } else {
                &mut egress
            };
            part.push_str(line);
            part.push('\n');
        }
        (header, egress, ingress)
    };
    let (header, egress, _) = split(source);
    let (_, _, ingress) = split(destination);
    let header = match header.rsplit_once(": ") {
        Some((flow, _)) => format!("{flow}: {verdict}"),
        None => header,
    };
    format!("{header}\n{egress}{ingress}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(node: &str, verdict: &str) -> DecisionView {
        DecisionView {
            node: node.to_string(),
            endpoint: "x/a".to_string(),
            verdict: verdict.to_string(),
            reason: ReasonView::NoProfileAllowed,
        }
    }

    #[test]
    fn combine_takes_egress_from_the_source_node_and_ingress_from_the_destination_node() {
        let source = ExplainView {
            verdict: "allow".into(),
            egress: Some(side("node1", "allow")),
            ingress: None,
            text: "x/a (10.0.0.1) -> x/b (10.0.0.2) TCP/80: allowed\n  egress of x/a: allowed by profile kns.x, rule 0\n    passed: tier t (default Pass)\n  ingress of x/b: not on this node\n".into(),
        };
        let destination = ExplainView {
            verdict: "deny".into(),
            egress: None,
            ingress: Some(side("node2", "deny")),
            text: "x/a (10.0.0.1) -> x/b (10.0.0.2) TCP/80: denied\n  egress of x/a: not on this node\n  ingress of x/b: denied by tier default, tier default\n".into(),
        };
        let combined = ExplainView::combine(source, destination);
        assert_eq!(combined.verdict, "deny");
        assert_eq!(
            combined.egress.as_ref().map(|d| d.node.as_str()),
            Some("node1")
        );
        assert_eq!(
            combined.ingress.as_ref().map(|d| d.node.as_str()),
            Some("node2")
        );
        assert_eq!(
            combined.text,
            "x/a (10.0.0.1) -> x/b (10.0.0.2) TCP/80: denied\n  egress of x/a: allowed by profile kns.x, rule 0\n    passed: tier t (default Pass)\n  ingress of x/b: denied by tier default, tier default\n"
        );
    }
}
