//! Durations as users write them: `250ms`, `5s`, `10m`, `1h`, `1m30s`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration parsed from YAML text such as `250ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let text = match &v {
            serde_json::Value::String(s) => s.as_str(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "expected a duration such as `250ms`, `5s` or `10m`, found {}",
                    super::file::kind(other)
                )));
            }
        };
        parse(text).map(Dur).map_err(serde::de::Error::custom)
    }
}

/// Parses `250ms`, `5s`, `1m30s`; a bare number is refused (the unit must be explicit).
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration `{text}`: expected a number with a unit (ms, s, m, h), e.g. `250ms`, `5s`, `10m`"
        )
    };
    if text.trim().is_empty() || text.trim().chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    humantime::parse_duration(text.trim()).map_err(|_| bad())
}

/// A configured duration, or the default when the key is absent.
pub fn or(configured: Option<Dur>, default: Duration) -> Duration {
    configured.map_or(default, |d| d.0)
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert!(parse("5").is_err());
        assert!(parse("5x").unwrap_err().contains("invalid duration `5x`"));
        assert!(parse("").is_err());
    }
}
