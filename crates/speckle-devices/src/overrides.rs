//! Dotted `section.key=value` overrides of a TOML tree: the one routine behind every `--set`
//! (device configs, run configs) and every sweep grid key.
//!
//! Overrides are applied to the TOML tree *before* it is deserialized, so a misspelt key is
//! rejected by `deny_unknown_fields` exactly like a misspelt key in a file.
//!
//! ```
//! use speckle_devices::overrides;
//!
//! let set = overrides::parse(&["camera.bits=10".into(), "camera.name=x y".into()]).unwrap();
//! let mut base: toml::Table = "[camera]\nbits = 8\ngain = 2.0\n".parse().unwrap();
//! overrides::merge(&mut base, &set);
//! assert_eq!(base["camera"]["bits"].as_integer(), Some(10));
//! assert_eq!(base["camera"]["gain"].as_float(), Some(2.0));
//! assert_eq!(base["camera"]["name"].as_str(), Some("x y")); // not TOML: taken as a string
//! assert!(overrides::parse(&["novalue".into()]).unwrap_err().to_string().contains("novalue"));
//! ```
use toml::{Table, Value};

/// A malformed override or dotted key. Each message is one line naming the override.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OverrideError {
    /// No `=` in the override.
    #[error("--set {0}: expected section.key=value")]
    NoValue(String),
    /// A dotted key with an empty part (`a..b`, `.a`, ``).
    #[error("{0}: empty key part")]
    EmptyKey(String),
    /// The dotted path goes through a value that is not a table.
    #[error("{item}: {path} is a value, not a section")]
    NotASection {
        /// The override as given (`--set KEY=VALUE`), or the key.
        item: String,
        /// The prefix of the key that names a value.
        path: String,
    },
}

/// Parses an override's value: a TOML literal (`3`, `1e-3`, `true`, `"x"`, `[800, 800]`), or,
/// when it is not valid TOML, the raw text as a string (`sim:dev.toml`, `ternary:0.1`).
pub fn parse_value(raw: &str) -> Value {
    let raw = raw.trim();
    format!("v = {raw}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_string()))
}

/// Sets the dotted `key` (`a.b.c`) of `tree` to `value`, creating missing tables on the way.
/// `item` is what error messages quote (the whole override, or the key).
pub fn set_dotted(
    tree: &mut Table,
    key: &str,
    value: Value,
    item: &str,
) -> Result<(), OverrideError> {
    let parts: Vec<&str> = key.trim().split('.').map(str::trim).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(OverrideError::EmptyKey(item.to_string()));
    }
    let (last, path) = parts
        .split_last()
        .ok_or_else(|| OverrideError::EmptyKey(item.to_string()))?;
    let mut node = tree;
    for (i, part) in path.iter().enumerate() {
        let entry = node
            .entry(part.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        node = match entry {
            Value::Table(t) => t,
            _ => {
                return Err(OverrideError::NotASection {
                    item: item.to_string(),
                    path: parts[..=i].join("."),
                })
            }
        };
    }
    node.insert(last.to_string(), value);
    Ok(())
}

/// The value at a dotted key, if present.
pub fn get_dotted<'a>(tree: &'a Table, key: &str) -> Option<&'a Value> {
    let mut parts = key.split('.');
    let mut node = tree.get(parts.next()?)?;
    for part in parts {
        node = node.as_table()?.get(part)?;
    }
    Some(node)
}

/// Applies one `a.b.c=value` override to `tree`. Unknown keys are not detected here but by
/// the deserialization that follows, exactly as for a file.
pub fn apply(tree: &mut Table, item: &str) -> Result<(), OverrideError> {
    let (key, raw) = item
        .split_once('=')
        .ok_or_else(|| OverrideError::NoValue(item.to_string()))?;
    set_dotted(tree, key, parse_value(raw), &format!("--set {item}"))
}

/// Parses overrides into a table of their own, to [`merge`] into a config tree later.
pub fn parse(items: &[String]) -> Result<Table, OverrideError> {
    let mut table = Table::new();
    for item in items {
        apply(&mut table, item)?;
    }
    Ok(table)
}

/// Merges `overrides` into `base` recursively: tables merge key by key, any other value
/// replaces the one in `base`, and keys absent from `base` are added (so that deserializing
/// with `deny_unknown_fields` rejects a misspelt override).
pub fn merge(base: &mut Table, overrides: &Table) {
    for (key, value) in overrides {
        match (base.get_mut(key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_nest_and_merge() {
        let o = parse(&[
            "camera.bits=10".into(),
            "seed=3".into(),
            "a.b=[1, 2]".into(),
        ])
        .unwrap();
        let mut base: Table = "seed = 1\n[camera]\nbits = 8\ngain = 2.0\n"
            .parse()
            .unwrap();
        merge(&mut base, &o);
        assert_eq!(base["camera"]["bits"].as_integer(), Some(10));
        assert_eq!(base["camera"]["gain"].as_float(), Some(2.0));
        assert_eq!(base["seed"].as_integer(), Some(3));
        assert_eq!(
            get_dotted(&base, "a.b")
                .and_then(Value::as_array)
                .map(Vec::len),
            Some(2)
        );
        assert_eq!(get_dotted(&base, "a.c"), None);
    }

    #[test]
    fn errors_are_one_line_and_quote_the_override() {
        for (item, needle) in [
            ("novalue", "expected section.key=value"),
            ("a..b=1", "empty key part"),
            ("=1", "empty key part"),
            ("seed.x=1", "seed is a value, not a section"),
        ] {
            let mut tree: Table = "seed = 1".parse().unwrap();
            let e = apply(&mut tree, item).unwrap_err().to_string();
            assert!(
                e.contains(item) && e.contains(needle) && !e.contains('\n'),
                "{e}"
            );
        }
    }

    #[test]
    fn values_are_toml_or_text() {
        assert_eq!(parse_value(" 3 "), Value::Integer(3));
        assert_eq!(parse_value("1e-3"), Value::Float(1e-3));
        assert_eq!(parse_value("\"x\""), Value::String("x".into()));
        assert_eq!(
            parse_value("sim:dev.toml"),
            Value::String("sim:dev.toml".into())
        );
    }
}
