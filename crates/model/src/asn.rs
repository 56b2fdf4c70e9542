//! BGP AS numbers as Calico writes them: a plain integer or the dotted `high.low` form (RFC 5396).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 4-octet AS number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AsNumber(pub u32);

/// Why an AS number string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not an AS number (expected 0..4294967295 or dotted 0..65535.0..65535)")]
pub struct AsNumberError {
    pub input: String,
}

impl AsNumber {
    /// AS_TRANS (RFC 6793), sent in 2-octet fields when the real AS does not fit.
    pub const TRANS: AsNumber = AsNumber(23456);
    /// Calico's default cluster AS.
    pub const CALICO_DEFAULT: AsNumber = AsNumber(64512);

    /// Whether the number fits in a 2-octet AS field.
    pub fn is_two_octet(self) -> bool {
        self.0 <= u32::from(u16::MAX)
    }
}

impl FromStr for AsNumber {
    type Err = AsNumberError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || AsNumberError {
            input: text.to_string(),
        };
        let trimmed = text.trim();
        if let Some((high, low)) = trimmed.split_once('.') {
            let high: u16 = high.parse().map_err(|_| err())?;
            let low: u16 = low.parse().map_err(|_| err())?;
            return Ok(AsNumber((u32::from(high) << 16) | u32::from(low)));
        }
        trimmed.parse::<u32>().map(AsNumber).map_err(|_| err())
    }
}

impl fmt::Display for AsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for AsNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for AsNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => u32::try_from(n)
                .map(AsNumber)
                .map_err(|_| serde::de::Error::custom(format!("AS number {n} exceeds 4294967295"))),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl schemars::JsonSchema for AsNumber {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AsNumber".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // Calico's CRDs declare AS numbers as 32-bit integers; the dotted form is a client-side spelling.
        schemars::json_schema!({ "type": "integer", "format": "int32" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_dotted() {
        assert_eq!("64512".parse::<AsNumber>(), Ok(AsNumber(64512)));
        assert_eq!("1.10".parse::<AsNumber>(), Ok(AsNumber(65546)));
        assert_eq!("4294967295".parse::<AsNumber>(), Ok(AsNumber(u32::MAX)));
        assert!("4294967296".parse::<AsNumber>().is_err());
        assert!("65536.1".parse::<AsNumber>().is_err());
        assert!("a.b".parse::<AsNumber>().is_err());
        assert!("".parse::<AsNumber>().is_err());
    }

    #[test]
    fn serde_accepts_number_or_dotted_string() {
        let n: AsNumber = serde_json::from_str("65000").unwrap();
        assert_eq!(n, AsNumber(65000));
        let d: AsNumber = serde_json::from_str("\"2.1\"").unwrap();
        assert_eq!(d, AsNumber(131073));
        assert_eq!(serde_json::to_string(&d).unwrap(), "131073");
    }
}
