//! Labels as `kubectl` takes them: `--labels k=v,k2=v2` lists, and `lab label` edits
//! (`k=v` sets, `k-` removes, an existing key with another value needs `--overwrite`), with
//! kubectl's messages. Keys and values are checked as the API server checks them.

use std::collections::BTreeMap;

use starling_policy::k8s::{is_label_key, is_label_value};

pub type Labels = BTreeMap<String, String>;

/// The label the API server puts on every namespace (its name, always).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

fn check(key: &str, value: &str) -> Result<(), String> {
    if !is_label_key(key) {
        return Err(format!(
            "invalid label key {key:?}: a qualified name is [prefix/]name, the name 1-63 of \
             [A-Za-z0-9._-] beginning and ending alphanumeric, the prefix a DNS subdomain"
        ));
    }
    if !is_label_value(value) {
        return Err(format!(
            "invalid label value {value:?} of {key:?}: at most 63 of [A-Za-z0-9._-], beginning \
             and ending alphanumeric (or empty)"
        ));
    }
    Ok(())
}

/// Parses `k=v,k2=v2` (empty text: no labels).
pub fn parse_list(text: &str) -> Result<Labels, String> {
    let mut labels = Labels::new();
    for item in text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| format!("invalid label spec: {item} (want key=value)"))?;
        check(key, value)?;
        if labels.insert(key.to_string(), value.to_string()).is_some() {
            return Err(format!("label {key:?} is given twice"));
        }
    }
    Ok(labels)
}

/// One `lab label` invocation's changes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelEdit {
    pub set: Labels,
    pub remove: Vec<String>,
}

impl LabelEdit {
    /// Parses kubectl's arguments: `k=v` and `k-`.
    pub fn parse(args: &[String]) -> Result<LabelEdit, String> {
        let mut edit = LabelEdit::default();
        for arg in args {
            if let Some((key, value)) = arg.split_once('=') {
                check(key, value).map_err(|error| format!("invalid label spec: {arg}: {error}"))?;
                edit.set.insert(key.to_string(), value.to_string());
            } else if let Some(key) = arg.strip_suffix('-') {
                check(key, "").map_err(|error| format!("invalid label spec: {arg}: {error}"))?;
                edit.remove.push(key.to_string());
            } else {
                return Err(format!("invalid label spec: {arg}"));
            }
        }
        if edit.set.is_empty() && edit.remove.is_empty() {
            return Err("at least one label update is required".to_string());
        }
        if edit.remove.iter().any(|key| edit.set.contains_key(key)) {
            return Err("can not both modify and remove a label in the same command".to_string());
        }
        Ok(edit)
    }

    /// Applies the edit to `labels`: the new labels and kubectl's verdict (`labeled`,
    /// `unlabeled` or `not labeled`), or kubectl's refusal to overwrite.
    pub fn apply(
        &self,
        labels: &Labels,
        overwrite: bool,
    ) -> Result<(Labels, &'static str), String> {
        if !overwrite {
            let clashes: Vec<String> = self
                .set
                .iter()
                .filter_map(|(key, value)| {
                    labels
                        .get(key)
                        .filter(|current| *current != value)
                        .map(|current| {
                            format!(
                                "'{key}' already has a value ({current}), and --overwrite is false"
                            )
                        })
                })
                .collect();
            if !clashes.is_empty() {
                return Err(clashes.join(", "));
            }
        }
        let mut next = labels.clone();
        for key in &self.remove {
            next.remove(key);
        }
        for (key, value) in &self.set {
            next.insert(key.clone(), value.clone());
        }
        let verdict = if next == *labels {
            "not labeled"
        } else if self.set.is_empty() {
            "unlabeled"
        } else {
            "labeled"
        };
        Ok((next, verdict))
    }

    /// Keys to remove that `labels` does not have (kubectl warns `label "k" not found.`).
    pub fn missing<'a>(&'a self, labels: &'a Labels) -> impl Iterator<Item = &'a str> + 'a {
        self.remove
            .iter()
            .filter(|key| !labels.contains_key(*key))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn lists_parse_and_reject_bad_keys_and_values() {
        assert_eq!(
            parse_list("pod=a, app.kubernetes.io/name=web,empty=").unwrap(),
            labels(&[
                ("pod", "a"),
                ("app.kubernetes.io/name", "web"),
                ("empty", "")
            ])
        );
        assert_eq!(parse_list("").unwrap(), Labels::new());
        assert!(parse_list("novalue")
            .unwrap_err()
            .contains("invalid label spec"));
        assert!(parse_list("-a=b")
            .unwrap_err()
            .contains("invalid label key"));
        assert!(parse_list("a=b c")
            .unwrap_err()
            .contains("invalid label value"));
        assert!(parse_list("a=1,a=2").unwrap_err().contains("twice"));
    }

    #[test]
    fn edits_follow_kubectl() {
        let current = labels(&[("pod", "a"), ("tier", "web")]);
        let edit = LabelEdit::parse(&args(&["pod=b", "tier-", "new=1"])).unwrap();
        assert_eq!(
            edit.apply(&current, false).unwrap_err(),
            "'pod' already has a value (a), and --overwrite is false"
        );
        let (next, verdict) = edit.apply(&current, true).unwrap();
        assert_eq!(next, labels(&[("pod", "b"), ("new", "1")]));
        assert_eq!(verdict, "labeled");
        // The same value again needs no --overwrite and changes nothing.
        let same = LabelEdit::parse(&args(&["pod=a"])).unwrap();
        assert_eq!(
            same.apply(&current, false).unwrap(),
            (current.clone(), "not labeled")
        );
        let removal = LabelEdit::parse(&args(&["tier-", "gone-"])).unwrap();
        assert_eq!(
            removal.apply(&current, false).unwrap(),
            (labels(&[("pod", "a")]), "unlabeled")
        );
        assert_eq!(removal.missing(&current).collect::<Vec<_>>(), vec!["gone"]);
        assert_eq!(
            LabelEdit::parse(&[]).unwrap_err(),
            "at least one label update is required"
        );
        assert_eq!(
            LabelEdit::parse(&args(&["a=1", "a-"])).unwrap_err(),
            "can not both modify and remove a label in the same command"
        );
        assert!(LabelEdit::parse(&args(&["plain"]))
            .unwrap_err()
            .starts_with("invalid label spec: plain"));
    }
}
