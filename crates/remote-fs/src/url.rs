//! `file://` URLs: parsing a remote's location and printing it back.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use strata_remote::{RemoteError, Result};

/// Parses a folder remote's URL into the folder it names, touching nothing: `file:///abs/path` (also
/// `file://localhost/abs/path` and the short `file:/abs/path`, per RFC 8089), or a plain path,
/// relative or absolute. Percent escapes in a URL are decoded. The result is absolute (relative to the
/// current folder) but not canonicalized. [`FsRemote::from_url`](crate::FsRemote::from_url) opens
/// exactly what this accepts, so it is the check to run before storing a URL. Any other scheme
/// (`s3://…`), a host (`file://host/x`), an empty path (`file://`) or a malformed URL is
/// [`RemoteError::Invalid`], naming the URL.
pub fn parse_url(url: &str) -> Result<PathBuf> {
    let bad = |why: &str| {
        Err(RemoteError::Invalid(
            format!("folder remote URL {url:?}: {why}").into(),
        ))
    };
    if url.is_empty() {
        return bad("is empty");
    }
    let path: PathBuf = match scheme(url) {
        Some(s) if s.eq_ignore_ascii_case("file") => {
            let rest = &url[s.len() + 1..];
            let path_part = if let Some(after) = rest.strip_prefix("//") {
                let (host, path) = match after.find('/') {
                    Some(i) => after.split_at(i),
                    None => (after, ""),
                };
                if !host.is_empty() && !host.eq_ignore_ascii_case("localhost") {
                    return bad("names a host; only local paths are supported (file:///abs/path)");
                }
                path
            } else {
                rest
            };
            if path_part.is_empty() {
                return bad("has an empty path");
            }
            if !path_part.starts_with('/') {
                return bad("must hold an absolute path (file:///abs/path)");
            }
            if path_part.contains(['?', '#']) {
                return bad("has a query or fragment");
            }
            let Some(bytes) = percent_decode(path_part) else {
                return bad("has a malformed percent escape");
            };
            if bytes.contains(&0) {
                return bad("has a NUL byte");
            }
            bytes_to_path(bytes).ok_or_else(|| {
                RemoteError::Invalid(
                    format!("folder remote URL {url:?}: the path is not valid here").into(),
                )
            })?
        }
        Some(s) => {
            return bad(&format!(
                "scheme {s:?} is not a folder; use file:///abs/path or a plain path"
            ))
        }
        None => PathBuf::from(url),
    };
    std::path::absolute(&path)
        .map_err(|e| RemoteError::Invalid(format!("folder remote URL {url:?}: {e}").into()))
}

/// The URL scheme of `s`, if it starts with one: `scheme:` followed by `//`, or `file:` alone. A plain
/// path that merely contains a colon (`my:folder`) has none.
fn scheme(s: &str) -> Option<&str> {
    let i = s.find(':')?;
    let name = &s[..i];
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid {
        return None;
    }
    // A one-letter "scheme" is a Windows drive (C:\…), not a URL.
    if name.len() == 1 {
        return None;
    }
    (s[i + 1..].starts_with("//") || name.eq_ignore_ascii_case("file")).then_some(name)
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(unix)]
fn bytes_to_path(bytes: Vec<u8>) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    Some(PathBuf::from(OsString::from_vec(bytes)))
}

#[cfg(not(unix))]
fn bytes_to_path(bytes: Vec<u8>) -> Option<PathBuf> {
    String::from_utf8(bytes)
        .ok()
        .map(|s| PathBuf::from(OsString::from(s)))
}

/// `file://` followed by the path, with what would not survive [`parse_url`] (`%`, `?`, `#`,
/// spaces and control characters, and bytes that are not UTF-8) percent-encoded, so the URL parses
/// back to the same folder. Other non-ASCII characters stay as they are, for readability.
pub(crate) fn to_url(path: &Path) -> String {
    let mut out = String::from("file://");
    let bytes = path_bytes(path);
    let mut rest: &[u8] = &bytes;
    while !rest.is_empty() {
        let (valid, invalid) = match std::str::from_utf8(rest) {
            Ok(s) => (s, &[][..]),
            Err(e) => {
                let (v, bad) = rest.split_at(e.valid_up_to());
                let n = e.error_len().unwrap_or(bad.len());
                (std::str::from_utf8(v).expect("valid up to here"), &bad[..n])
            }
        };
        for c in valid.chars() {
            if c.is_control() || matches!(c, ' ' | '%' | '?' | '#') {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            } else {
                out.push(c);
            }
        }
        for b in invalid {
            out.push_str(&format!("%{b:02X}"));
        }
        rest = &rest[valid.len() + invalid.len()..];
    }
    out
}

#[cfg(unix)]
fn path_bytes(path: &Path) -> std::borrow::Cow<'_, [u8]> {
    use std::os::unix::ffi::OsStrExt;
    std::borrow::Cow::Borrowed(path.as_os_str().as_bytes())
}

#[cfg(not(unix))]
fn path_bytes(path: &Path) -> std::borrow::Cow<'_, [u8]> {
    std::borrow::Cow::Owned(path.to_string_lossy().replace('\\', "/").into_bytes())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert_eq!(scheme("file:///a"), Some("file"));
        assert_eq!(scheme("FILE:/a"), Some("FILE"));
        assert_eq!(scheme("s3://bucket/x"), Some("s3"));
        assert_eq!(scheme("my:folder"), None);
        assert_eq!(scheme("C:\\x"), None);
        assert_eq!(scheme("./a:b"), None);
    }

    #[test]
    fn roundtrip() {
        use std::os::unix::ffi::OsStrExt;
        let odd = std::ffi::OsStr::from_bytes(b"/tmp/not\xffutf8\xc3/x");
        for p in [
            Path::new("/tmp/a b/c%d"),
            Path::new("/tmp/ünï/x?y#z\t"),
            Path::new("/"),
            Path::new(odd),
        ] {
            let url = to_url(p);
            assert_eq!(parse_url(&url).unwrap(), p, "{url}");
        }
        assert_eq!(to_url(Path::new("/tmp/plain")), "file:///tmp/plain");
        assert_eq!(
            to_url(Path::new("/tmp/jürgen's remote")),
            "file:///tmp/jürgen's%20remote"
        );
        assert_eq!(to_url(Path::new(odd)), "file:///tmp/not%FFutf8%C3/x");
    }
}
