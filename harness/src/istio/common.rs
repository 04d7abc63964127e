//! What the three kinds share: Kubernetes metadata, `PortSelector`, and the proto scalar types
//! in the shapes the CRD gives them.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// Kubernetes object metadata. Only what the harness reads is typed; the rest (`uid`,
/// `generateName`, `ownerReferences`, …) is kept as given, since the API server validates it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Required here although Kubernetes allows `generateName`: `kubectl apply` needs a name.
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl ObjectMeta {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.as_ref()?.get(key).map(String::as_str)
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// `PortSelector` (virtual_service.proto), also used by DestinationRule's port-level settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSelector {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
}

/// A `google.protobuf.Duration`. The CRD carries it as a string that Kubernetes checks with CEL's
/// `duration()`, i.e. Go's syntax: `"1.5s"`, `"100ms"`, `"1h30m"`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Duration(pub String);

impl Duration {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The length in nanoseconds, or `None` if the text is not a Go duration.
    pub fn nanos(&self) -> Option<i128> {
        parse_go_duration(&self.0)
    }

    /// The length, or `None` if the text is not a Go duration or is negative.
    pub fn to_std(&self) -> Option<std::time::Duration> {
        let nanos = u64::try_from(self.nanos()?).ok()?;
        Some(std::time::Duration::from_nanos(nanos))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationText;
        impl Visitor<'_> for DurationText {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(DURATION_EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                Ok(Duration(v.to_string()))
            }
        }
        deserializer.deserialize_str(DurationText)
    }
}

pub(crate) const DURATION_EXPECTED: &str =
    "a duration string such as \"1.5s\", \"100ms\" or \"1h\"";

/// Go's `time.ParseDuration` grammar: `[-+]?([0-9]*(\.[0-9]*)?(ns|us|µs|μs|ms|s|m|h))+`, or `0`.
pub(crate) fn parse_go_duration(text: &str) -> Option<i128> {
    let (negative, mut rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let whole_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (whole, after) = rest.split_at(whole_len);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(f) => {
                let n = f.bytes().take_while(u8::is_ascii_digit).count();
                f.split_at(n)
            }
            None => ("", after),
        };
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let whole: i128 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        // Digits past nanosecond precision of an hour cannot change the result.
        let fraction = &fraction[..fraction.len().min(13)];
        let mut component = whole.checked_mul(unit_nanos)?;
        if !fraction.is_empty() {
            let scale = 10i128.pow(fraction.len() as u32);
            component += fraction.parse::<i128>().ok()? * unit_nanos / scale;
        }
        total = total.checked_add(component)?;
        rest = after;
    }
    // Go refuses durations beyond an i64 of nanoseconds (about 290 years).
    if total > i64::MAX as i128 {
        return None;
    }
    Some(if negative { -total } else { total })
}

/// A proto `double` or `google.protobuf.DoubleValue`, kept as the JSON number it was given as,
/// so `50` is written back as `50` and `0.5` as `0.5`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Double(pub serde_json::Number);

impl Double {
    pub fn value(&self) -> f64 {
        self.0.as_f64().unwrap_or_default()
    }
}

impl From<f64> for Double {
    fn from(v: f64) -> Self {
        Double(serde_json::Number::from_f64(v).unwrap_or_else(|| 0.into()))
    }
}

/// Reads a proto wrapper field (`BoolValue`, `UInt32Value`, …), which the CRD marks `nullable`:
/// an explicit `null` becomes `Some(None)`, so it is written back as `null`.
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The value of a nullable wrapper field, `None` when absent or `null`.
pub(crate) fn wrapped<T: Copy>(field: &Option<Option<T>>) -> Option<T> {
    field.flatten()
}

/// The value of a nullable `DoubleValue` field, `None` when absent or `null`.
pub(crate) fn wrapped_double(field: &Option<Option<Double>>) -> Option<f64> {
    field.as_ref()?.as_ref().map(Double::value)
}

/// An absent repeated field reads as empty.
pub(crate) fn slice<T>(field: &Option<Vec<T>>) -> &[T] {
    field.as_deref().unwrap_or_default()
}

/// An absent map field reads as empty.
pub(crate) fn entries<V>(
    field: &Option<BTreeMap<String, V>>,
) -> impl Iterator<Item = (&str, &V)> + '_ {
    field
        .iter()
        .flat_map(|m| m.iter().map(|(k, v)| (k.as_str(), v)))
}
