//! Validated remote paths.

use crate::error::{RemoteError, Result};

/// A relative path inside a remote: `/`-separated segments, none empty, `.` or `..`, with no control
/// characters or backslashes, and no leading `/`. Path traversal is impossible by construction.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RemotePath(String);

/// Longest accepted path, in bytes (S3 keys allow 1024).
pub const MAX_PATH_BYTES: usize = 1024;

impl RemotePath {
    /// Validates a path.
    pub fn parse(s: &str) -> Result<RemotePath> {
        let bad = |why: &str| {
            Err(RemoteError::Invalid(
                format!("remote path {s:?}: {why}").into(),
            ))
        };
        if s.is_empty() {
            return bad("is empty");
        }
        if s.len() > MAX_PATH_BYTES {
            return bad("is too long");
        }
        if s.starts_with('/') {
            return bad("must be relative (it starts with '/')");
        }
        for seg in s.split('/') {
            if seg.is_empty() {
                return bad("has an empty segment");
            }
            if seg == "." || seg == ".." {
                return bad("has a '.' or '..' segment");
            }
            if seg.chars().any(|c| c.is_control() || c == '\\') {
                return bad("has a control character or backslash");
            }
        }
        Ok(RemotePath(s.to_string()))
    }

    /// Validates a listing prefix, as taken by [`Remote::list_blobs`](crate::Remote::list_blobs) and
    /// [`Remote::list_cursors`](crate::Remote::list_cursors): `""` means "everything" (`Ok(None)`);
    /// otherwise one trailing `/` is ignored and the rest must be a valid [`RemotePath`]
    /// ([`RemoteError::Invalid`] if not, so `"../x"` or `"/"` can never list outside the remote).
    pub fn parse_prefix(prefix: &str) -> Result<Option<RemotePath>> {
        if prefix.is_empty() {
            return Ok(None);
        }
        RemotePath::parse(prefix.strip_suffix('/').unwrap_or(prefix)).map(Some)
    }

    /// Whether this path lies under `prefix` on segment boundaries: `a/b` is under `a/b` itself and
    /// `a/b/c` is under `a/b`, but `a/bc` and `a/b.txt` are not.
    pub fn starts_with(&self, prefix: &RemotePath) -> bool {
        match self.0.strip_prefix(prefix.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }

    /// Whether this path is listed under a prefix from [`RemotePath::parse_prefix`] (`None` matches
    /// every path).
    pub fn matches_prefix(&self, prefix: Option<&RemotePath>) -> bool {
        prefix.is_none_or(|p| self.starts_with(p))
    }

    /// Joins a further relative path.
    pub fn join(&self, rest: &str) -> Result<RemotePath> {
        RemotePath::parse(&format!("{}/{}", self.0, rest))
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The last segment.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl std::fmt::Display for RemotePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for RemotePath {
    type Err = RemoteError;
    fn from_str(s: &str) -> Result<RemotePath> {
        RemotePath::parse(s)
    }
}

/// Encodes any string (a branch name, say) as one safe path segment: ASCII lowercase letters, digits,
/// `-`, `_` and `.` stay; every other byte, including uppercase letters (so that names differing only in
/// case stay distinct on case-insensitive file systems), becomes `~XX` in lowercase hex. A leading `.` is
/// also escaped, so no segment is `.` or `..` or hidden.
pub fn encode_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        let keep = b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || b == b'-'
            || b == b'_'
            || (b == b'.' && i > 0);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("~{b:02x}"));
        }
    }
    if out.is_empty() {
        out.push('~');
    }
    out
}

/// Reverses [`encode_segment`].
pub fn decode_segment(seg: &str) -> Result<String> {
    if seg == "~" {
        return Ok(String::new());
    }
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'~' {
            let hex = seg
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    RemoteError::Invalid(format!("bad escape in encoded name {seg:?}").into())
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| RemoteError::Invalid(format!("encoded name {seg:?} is not UTF-8").into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert!(RemotePath::parse("a/b.c").is_ok());
        for bad in [
            "", "/a", "a//b", "a/../b", "..", "./a", "a/b/", "a\\b", "a\nb",
        ] {
            assert!(RemotePath::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn prefixes() {
        assert_eq!(RemotePath::parse_prefix("").unwrap(), None);
        let p = RemotePath::parse_prefix("a/b/").unwrap().unwrap();
        assert_eq!(p.as_str(), "a/b");
        assert_eq!(RemotePath::parse_prefix("a/b").unwrap(), Some(p.clone()));
        for bad in ["/", "/a", "../x", "a/../../b", "a//", "a\\b", "a/./b"] {
            assert!(
                matches!(RemotePath::parse_prefix(bad), Err(RemoteError::Invalid(_))),
                "{bad:?}"
            );
        }
        let path = |s: &str| RemotePath::parse(s).unwrap();
        assert!(path("a/b").starts_with(&p));
        assert!(path("a/b/c").starts_with(&p));
        assert!(path("a/b/c/d").starts_with(&p));
        assert!(!path("a/bc").starts_with(&p));
        assert!(!path("a/b.txt").starts_with(&p));
        assert!(!path("a/b-c/d").starts_with(&p));
        assert!(!path("a").starts_with(&p));
        assert!(path("zzz").matches_prefix(None));
        assert!(!path("zzz").matches_prefix(Some(&p)));
    }

    #[test]
    fn join_refuses_traversal() {
        let base = RemotePath::parse("base").unwrap();
        for bad in ["../x", "/abs", "a/../../b", "a\\b", "", "."] {
            assert!(base.join(bad).is_err(), "{bad:?}");
        }
        assert_eq!(base.join("a/b").unwrap().as_str(), "base/a/b");
        assert_eq!(base.join("a/b").unwrap().file_name(), "b");
        assert_eq!(
            base.join("a/b").unwrap().segments().collect::<Vec<_>>(),
            ["base", "a", "b"]
        );
    }

    #[test]
    fn segments_roundtrip() {
        for name in [
            "main",
            "Main",
            "agent/a b",
            "..",
            ".hidden",
            "ünï",
            "~x",
            "",
            "a%2e",
        ] {
            let enc = encode_segment(name);
            assert!(RemotePath::parse(&enc).is_ok(), "{name:?} -> {enc:?}");
            assert_ne!(enc, ".");
            assert!(!enc.contains('/'));
            assert_eq!(decode_segment(&enc).unwrap(), name);
        }
        assert_ne!(encode_segment("Main"), encode_segment("main"));
    }
}
