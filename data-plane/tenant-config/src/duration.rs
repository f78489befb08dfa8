//! Durations written the way Centrifugo (Go) writes them: `"25s"`, `"1m30s"`, `"720h"`, `"500ms"`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration in a config file. Serialises back to the Go form (`"1m30s"`), so a config the
/// control plane renders reads the same as one a person wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }
    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }
    /// The wrapped [`Duration`].
    pub const fn get(self) -> Duration {
        self.0
    }
    /// True for a zero duration (an option left off).
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

/// Parses Go's `time.ParseDuration` syntax: one or more `<decimal><unit>` pairs with units
/// `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`; `"0"` alone is zero. Negative durations are refused.
/// Exact, like Go: integer arithmetic in nanoseconds, fractions below a nanosecond truncated
/// (floating point made `"2.026s"` 2.025999999 s, so a rendered config did not reload equal).
pub fn parse_go_duration(input: &str) -> Result<Duration, String> {
    /// Fraction digits kept: beyond 18, no unit (at most 3.6e12 ns) reaches a nanosecond.
    const MAX_FRACTION_DIGITS: usize = 18;
    let s = input.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s.starts_with('-') {
        return Err(format!("negative duration {input:?}"));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let too_large = || format!("duration {input:?} is too large");
    let mut total_nanos: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {input:?}"))?;
        let (whole, fraction) = match rest[..num_len].split_once('.') {
            Some((w, f)) => (w, f),
            None => (&rest[..num_len], ""),
        };
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(format!("invalid duration {input:?}"));
        }
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit: u128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            other => {
                return Err(format!(
                    "unknown unit {other:?} in duration {input:?} (use ns, us, ms, s, m or h)"
                ))
            }
        };
        rest = &rest[unit_len..];
        let mut whole_value: u128 = 0;
        for d in whole.bytes() {
            whole_value = whole_value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u128::from(d - b'0')))
                .ok_or_else(too_large)?;
        }
        let fraction = &fraction[..fraction.len().min(MAX_FRACTION_DIGITS)];
        let mut fraction_value: u128 = 0;
        for d in fraction.bytes() {
            fraction_value = fraction_value * 10 + u128::from(d - b'0');
        }
        let scale = 10u128.pow(fraction.len() as u32);
        let nanos = whole_value
            .checked_mul(nanos_per_unit)
            .and_then(|n| n.checked_add(fraction_value * nanos_per_unit / scale))
            .ok_or_else(too_large)?;
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(too_large)?;
    }
    let nanos = u64::try_from(total_nanos).map_err(|_| too_large())?;
    Ok(Duration::from_nanos(nanos))
}

/// Formats a duration the way Go prints one (`1h2m3s`, `1.5s`, `250ms`, `0s`).
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        return if nanos.is_multiple_of(1_000_000) {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            format!("{}us", nanos / 1_000)
        } else {
            format!("{nanos}ns")
        };
    }
    let total_secs = d.as_secs();
    let (h, m, s) = (total_secs / 3600, (total_secs / 60) % 60, total_secs % 60);
    let frac = d.subsec_nanos();
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if frac == 0 {
        out.push_str(&format!("{s}s"));
    } else {
        let frac_str = format!("{frac:09}");
        out.push_str(&format!("{s}.{}s", frac_str.trim_end_matches('0')));
    }
    out
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_go_duration(self.0))
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_go_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"300s\", \"1m30s\" or \"720h\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse_go_duration(v).map(ConfigDuration).map_err(E::custom)
            }
            // A bare number is ambiguous (Go reads it as nanoseconds, people mean seconds), so
            // only zero is accepted.
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                if v == 0 {
                    Ok(ConfigDuration::default())
                } else {
                    Err(E::custom(format!(
                        "durations are strings with a unit, e.g. \"{v}s\"; a bare number is ambiguous"
                    )))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                if v < 0 {
                    return Err(E::custom("negative duration"));
                }
                self.visit_u64(v as u64)
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_and_print_round_trip() {
        for (text, d) in [
            ("25s", Duration::from_secs(25)),
            ("1m30s", Duration::from_secs(90)),
            ("720h", Duration::from_secs(720 * 3600)),
            ("500ms", Duration::from_millis(500)),
            ("1.5s", Duration::from_millis(1500)),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(parse_go_duration(text).unwrap(), d, "{text}");
            assert_eq!(parse_go_duration(&format_go_duration(d)).unwrap(), d);
        }
        assert_eq!(format_go_duration(Duration::from_secs(3725)), "1h2m5s");
        assert_eq!(
            parse_go_duration(".5s").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_go_duration("5.s").unwrap(), Duration::from_secs(5));
        assert_eq!(
            parse_go_duration("1.5µs").unwrap(),
            Duration::from_nanos(1500)
        );
        assert_eq!(parse_go_duration("1.9ns").unwrap(), Duration::from_nanos(1));
        assert_eq!(
            parse_go_duration("1h1.0000000000000000000000001s").unwrap(),
            Duration::from_secs(3601)
        );
    }

    /// Found by the `config` fuzz target: `"2026ms"` printed as `"2.026s"`, which floating
    /// point read back as 2.025999999 s. Parsing is exact now, so printing round-trips.
    #[test]
    fn decimal_fractions_are_exact_and_round_trip() {
        let d = parse_go_duration("2026ms").unwrap();
        assert_eq!(format_go_duration(d), "2.026s");
        assert_eq!(parse_go_duration("2.026s").unwrap(), d);
        for nanos in [
            1,
            999,
            1_000_001,
            2_026_000_000,
            3_600_000_000_001,
            u64::MAX / 3,
            u64::MAX,
        ] {
            let d = Duration::from_nanos(nanos);
            assert_eq!(
                parse_go_duration(&format_go_duration(d)).unwrap(),
                d,
                "{nanos}"
            );
        }
    }

    #[test]
    fn bad_durations_are_refused_with_a_reason() {
        assert!(parse_go_duration("10")
            .unwrap_err()
            .contains("missing unit"));
        assert!(parse_go_duration("10d")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_go_duration("-1s").unwrap_err().contains("negative"));
        for bad in [".s", "1..5s", "1.2.3s", "1.5", "s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_go_duration("5124095577h")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_go_duration(&format!("{}s", "9".repeat(60)))
            .unwrap_err()
            .contains("too large"));
        let err = serde_json::from_str::<ConfigDuration>("300").unwrap_err();
        assert!(err.to_string().contains("\"300s\""));
    }
}
