//! A value in a JSON body by its JSON pointer (RFC 6901), read without building the document.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The value at `pointer` in `body`, as text: a string as it is, `null` as `None`, anything
/// else as its JSON. `None` if the body is not JSON or has nothing there.
///
/// Only the path to the value is followed; every other member is skipped without being kept,
/// which is what makes this cheap enough to run on every answer.
pub fn string_at(body: &[u8], pointer: &str) -> Option<String> {
    let tokens = tokens(pointer)?;
    let mut de = serde_json::Deserializer::from_slice(body);
    let found = At { path: &tokens }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    match found? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// The reference tokens of a pointer: `""` is the whole document, else each `/`-led token with
/// `~1` and `~0` unescaped. `None` for a pointer that does not start with `/`.
fn tokens(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

/// Deserializes to the value at `path` below the current one (`None` when absent).
struct At<'p> {
    path: &'p [String],
}

impl<'de> DeserializeSeed<'de> for At<'_> {
    type Value = Option<serde_json::Value>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        match self.path {
            [] => serde::Deserialize::deserialize(de).map(Some),
            _ => de.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for At<'_> {
    type Value = Option<serde_json::Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (head, rest) = self.path.split_first().expect("a non-empty path");
        // As in a parsed document, the last of duplicate members counts.
        let mut found = None;
        while let Some(is_head) = map.next_key_seed(KeyIs(head))? {
            if is_head {
                found = map.next_value_seed(At { path: rest })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let (head, rest) = self.path.split_first().expect("a non-empty path");
        // An array index: digits without a leading zero (RFC 6901 §4).
        let index = (head == "0" || !head.starts_with('0'))
            .then(|| head.parse::<usize>().ok())
            .flatten();
        let mut found = None;
        let mut i = 0;
        loop {
            if Some(i) == index {
                match seq.next_element_seed(At { path: rest })? {
                    Some(value) => found = value,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            i += 1;
        }
        Ok(found)
    }

    // A scalar has nothing below it.
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Deserializes a member's name to whether it is the given one, without keeping it.
struct KeyIs<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<bool, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pointer gives what serde_json's own `Value::pointer` gives on the parsed document.
    #[test]
    fn agrees_with_the_parsed_document() {
        let bodies = [
            r##"{"hostname":"podinfo-1","version":"6.14.1","revision":"","color":"#34577c","logo":"x","message":"greetings","goos":"linux","goarch":"amd64","runtime":"go1.25","num_goroutine":"8","num_cpu":"2"}"##,
            r#"{"build":{"tag":7,"list":[1,{"a":"b"},null],"esc\"aped":"e","a/b":"slash","m~n":"tilde"},"n":null,"t":true,"f":1.5}"#,
            r#"{"dup":"first","dup":"last"}"#,
            r#"[10,"x",{"k":["deep"]}]"#,
            r#""just a string""#,
            r#"{"version":"6.14.1"} trailing"#,
            "<html>",
            "",
        ];
        let pointers = [
            "",
            "/version",
            "/hostname",
            "/missing",
            "/build",
            "/build/tag",
            "/build/list",
            "/build/list/0",
            "/build/list/1/a",
            "/build/list/2",
            "/build/list/3",
            "/build/list/01",
            "/build/esc\"aped",
            "/build/a~1b",
            "/build/m~0n",
            "/n",
            "/t",
            "/f",
            "/dup",
            "/0",
            "/2/k/0",
            "/1/x",
            "/version/x",
            "no-slash",
        ];
        for body in bodies {
            let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
            for pointer in pointers {
                let want = parsed
                    .as_ref()
                    .and_then(|v| v.pointer(pointer))
                    .and_then(|v| match v {
                        serde_json::Value::String(s) => Some(s.clone()),
                        serde_json::Value::Null => None,
                        other => Some(other.to_string()),
                    });
                assert_eq!(
                    string_at(body.as_bytes(), pointer),
                    want,
                    "{pointer} in {body}"
                );
            }
        }
    }
}
