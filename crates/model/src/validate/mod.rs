//! Validation: wire resources ([`crate::wire`]) into domain types.
//!
//! Every rule names the resource kind, the object, the JSON path of the field and the reason,
//! e.g. `IPPool "rack0": spec.blockSize 33 is out of range 20..32 for IPv4`. The first broken
//! rule is reported; a resource that fails is to be treated as absent by the caller.
//! Defaults are applied here, so domain types never carry "unset" where Calico has a default.

pub mod bgp;
pub mod bgpfilter;
pub mod endpoint;
pub mod felix;
pub mod ippool;
pub mod reservation;

use std::fmt::Display;
use std::time::Duration;

use ipnet::IpNet;

use super::duration::parse_go_duration;
use starling_selector::Selector;

pub use ippool::{find_overlaps, resolve_overlaps, PoolOverlap};

/// A resource that breaks one of Calico's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name:?}: {field} {reason}")]
pub struct ValidationError {
    /// Calico kind, e.g. `IPPool`.
    pub kind: &'static str,
    /// Object name.
    pub name: String,
    /// JSON path of the field, e.g. `spec.blockSize` or `spec.allowedUses[1]`.
    pub field: String,
    pub reason: String,
}

/// The object being validated; builds errors that name it.
#[derive(Debug, Clone)]
pub(crate) struct Subject<'a> {
    pub kind: &'static str,
    pub name: &'a str,
}

impl Subject<'_> {
    pub fn error(&self, field: impl Into<String>, reason: impl Display) -> ValidationError {
        ValidationError {
            kind: self.kind,
            name: self.name.to_string(),
            field: field.into(),
            reason: reason.to_string(),
        }
    }

    /// A string enum field: absent or empty means `default`; matching is exact, as in the CRDs.
    pub fn choice<T: Copy>(
        &self,
        field: &str,
        value: Option<&str>,
        choices: &[(&str, T)],
        default: T,
    ) -> Result<T, ValidationError> {
        Ok(self
            .optional_choice(field, value, choices)?
            .unwrap_or(default))
    }

    /// As [`Subject::choice`] for a field whose absence means "not set here": `None` when absent
    /// or empty.
    pub fn optional_choice<T: Copy>(
        &self,
        field: &str,
        value: Option<&str>,
        choices: &[(&str, T)],
    ) -> Result<Option<T>, ValidationError> {
        let Some(text) = value.filter(|text| !text.is_empty()) else {
            return Ok(None);
        };
        choices
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, choice)| Some(*choice))
            .ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
                self.error(
                    field,
                    format!("{text:?} is not one of {}", names.join(", ")),
                )
            })
    }

    /// A selector field; absent or empty is `all()`.
    pub fn selector(&self, field: &str, value: Option<&str>) -> Result<Selector, ValidationError> {
        let text = value.unwrap_or("").trim();
        if text.is_empty() {
            return Ok(Selector::all());
        }
        Selector::parse(text)
            .map_err(|error| self.error(field, format!("{text:?} does not parse: {error}")))
    }

    /// A CIDR that must be written in its masked form (host bits zero).
    pub fn masked_cidr(&self, field: &str, text: &str) -> Result<IpNet, ValidationError> {
        let cidr: IpNet = text
            .trim()
            .parse()
            .map_err(|_| self.error(field, format!("{text:?} is not a CIDR")))?;
        if cidr.trunc() != cidr {
            return Err(self.error(
                field,
                format!(
                    "{text:?} has host bits set (the masked form is {})",
                    cidr.trunc()
                ),
            ));
        }
        Ok(cidr)
    }

    /// A CIDR that is masked silently (Calico accepts `10.0.0.1/24` there and means `10.0.0.0/24`).
    pub fn lenient_cidr(&self, field: &str, text: &str) -> Result<IpNet, ValidationError> {
        text.trim()
            .parse::<IpNet>()
            .map(|cidr| cidr.trunc())
            .map_err(|_| self.error(field, format!("{text:?} is not a CIDR")))
    }

    pub fn duration(
        &self,
        field: &str,
        value: Option<&str>,
    ) -> Result<Option<Duration>, ValidationError> {
        value
            .map(|text| parse_go_duration(text).map_err(|error| self.error(field, error)))
            .transpose()
    }

    /// An integer field that must lie in `min..=max`.
    pub fn int_in<T: TryFrom<i64>>(
        &self,
        field: &str,
        value: i64,
        min: i64,
        max: i64,
    ) -> Result<T, ValidationError> {
        if value < min || value > max {
            return Err(self.error(field, format!("{value} is out of range {min}..{max}")));
        }
        T::try_from(value)
            .map_err(|_| self.error(field, format!("{value} is out of range {min}..{max}")))
    }
}

/// True when two CIDRs share at least one address.
pub fn cidrs_overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}
