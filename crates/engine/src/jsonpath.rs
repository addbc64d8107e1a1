//! JSON Pointer (RFC 6901) paths into [`Value`] documents.

use crate::error::{Error, Result};
use crate::value::Value;

fn tokens(path: &str) -> Result<Vec<String>> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    if !path.starts_with('/') {
        return Err(Error::invalid(
            "JSON path",
            path,
            "must be empty or start with '/'",
        ));
    }
    Ok(path[1..]
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn index(path: &str, tok: &str, len: usize, allow_end: bool) -> Result<usize> {
    if tok == "-" && allow_end {
        return Ok(len);
    }
    let i: usize = tok
        .parse()
        .map_err(|_| Error::invalid("JSON path", path, format!("{tok:?} is not an array index")))?;
    let max = if allow_end {
        len
    } else {
        len.saturating_sub(1)
    };
    if i > max || (!allow_end && len == 0) {
        return Err(Error::invalid(
            "JSON path",
            path,
            format!("index {i} is out of bounds (length {len})"),
        ));
    }
    Ok(i)
}

/// The value at `path`, or `None` when a step is missing.
pub fn get<'v>(doc: &'v Value, path: &str) -> Result<Option<&'v Value>> {
    let mut cur = doc;
    for tok in tokens(path)? {
        cur = match cur {
            Value::Object(m) => match m.get(&tok) {
                Some(v) => v,
                None => return Ok(None),
            },
            Value::Array(a) => match tok.parse::<usize>().ok().and_then(|i| a.get(i)) {
                Some(v) => v,
                None => return Ok(None),
            },
            other => {
                return Err(Error::InvalidOperation(format!(
                    "JSON path {path:?}: cannot step into a {} with {tok:?}",
                    other.type_name()
                )))
            }
        };
    }
    Ok(Some(cur))
}

/// Sets the value at `path`, creating missing objects along the way.
pub fn set(doc: &mut Value, path: &str, value: Value) -> Result<()> {
    let toks = tokens(path)?;
    let Some((last, init)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    let mut cur = doc;
    for tok in init {
        cur = match cur {
            Value::Object(m) => m
                .entry(tok.clone())
                .or_insert_with(|| Value::Object(Default::default())),
            Value::Array(a) => {
                let i = index(path, tok, a.len(), false)?;
                &mut a[i]
            }
            other => {
                return Err(Error::InvalidOperation(format!(
                    "JSON path {path:?}: cannot step into a {} with {tok:?}",
                    other.type_name()
                )))
            }
        };
    }
    match cur {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let i = index(path, last, a.len(), true)?;
            if i == a.len() {
                a.push(value);
            } else {
                a[i] = value;
            }
        }
        other => {
            return Err(Error::InvalidOperation(format!(
                "JSON path {path:?}: cannot set {last:?} inside a {}",
                other.type_name()
            )))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        Value::from(serde_json::json!({"a": {"b": [10, 20]}, "x~y": 1, "p/q": 2}))
    }

    #[test]
    fn get_paths() {
        let d = doc();
        assert_eq!(get(&d, "/a/b/1").unwrap(), Some(&Value::Int(20)));
        assert_eq!(get(&d, "/x~0y").unwrap(), Some(&Value::Int(1)));
        assert_eq!(get(&d, "/p~1q").unwrap(), Some(&Value::Int(2)));
        assert_eq!(get(&d, "/a/zz").unwrap(), None);
        assert_eq!(get(&d, "").unwrap(), Some(&d));
        assert!(get(&d, "/a/b/0/deeper").is_err());
        assert!(get(&d, "nope").is_err());
    }

    #[test]
    fn set_paths() {
        let mut d = doc();
        set(&mut d, "/a/b/0", Value::Int(1)).unwrap();
        set(&mut d, "/a/b/-", Value::Int(3)).unwrap();
        set(&mut d, "/new/deep/k", Value::Bool(true)).unwrap();
        assert_eq!(
            d.to_json(),
            serde_json::json!({"a": {"b": [1, 20, 3]}, "x~y": 1, "p/q": 2, "new": {"deep": {"k": true}}})
        );
        let e = set(&mut d, "/a/b/9", Value::Null).unwrap_err().to_string();
        assert!(e.contains("out of bounds"), "{e}");
    }
}
