//! Validation of branch names, space names and keys.

use crate::error::{Error, Result};

/// Longest branch or space name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 4096;

fn check_common(what: &'static str, name: &str, max: usize) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(what, name, "must not be empty"));
    }
    if name.len() > max {
        return Err(Error::invalid(
            what,
            name,
            format!("is {} bytes; the limit is {max}", name.len()),
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(Error::invalid(
            what,
            name,
            format!("contains the control character {c:?}"),
        ));
    }
    Ok(())
}

/// Checks a branch name. Names starting with `_` are reserved for internal branches (such as origin
/// mirrors `_origin:{remote}:{branch}`) and are accepted only when `allow_reserved` is set.
pub fn validate_branch_name(name: &str, allow_reserved: bool) -> Result<()> {
    const WHAT: &str = "branch name";
    check_common(WHAT, name, MAX_NAME_BYTES)?;
    if name.trim() != name {
        return Err(Error::invalid(
            WHAT,
            name,
            "must not start or end with whitespace",
        ));
    }
    if name == "." || name == ".." {
        return Err(Error::invalid(WHAT, name, "is not a usable name"));
    }
    if name.starts_with('_') && !allow_reserved {
        return Err(Error::invalid(
            WHAT,
            name,
            "names starting with '_' are reserved for internal branches",
        ));
    }
    if !(allow_reserved && name.starts_with('_')) {
        check_ref_rules(name)?;
    }
    if let Some((_, v)) = name.rsplit_once('@') {
        if !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit()) {
            return Err(Error::invalid(
                WHAT,
                name,
                "must not end in '@' and digits, which reads as branch@version",
            ));
        }
    }
    Ok(())
}

/// git's rules for ref names (`git check-ref-format`), which user branch names follow so that they
/// read the same in Strata and in git: no `..`, no `@{`, no space or any of `~ ^ : ? * [ \\`, no
/// component that starts with `.` or ends with `.lock`, no empty component (`//`, a leading or
/// trailing `/`), no trailing `.`, and not `@` alone.
fn check_ref_rules(name: &str) -> Result<()> {
    const WHAT: &str = "branch name";
    let bad = |reason: &str| Err(Error::invalid(WHAT, name, reason));
    if name.contains("..") {
        return bad("must not contain '..'");
    }
    if name.contains("@{") {
        return bad("must not contain '@{'");
    }
    if name == "@" {
        return bad("must not be '@' alone");
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\' | '\u{7f}'))
    {
        return bad(&format!("must not contain {c:?} (git ref rules)"));
    }
    if name.ends_with('.') {
        return bad("must not end with '.'");
    }
    for part in name.split('/') {
        if part.is_empty() {
            return bad("must not start or end with '/' or contain '//'");
        }
        if part.starts_with('.') {
            return bad("no '/'-separated part may start with '.'");
        }
        if part.ends_with(".lock") {
            return bad("no '/'-separated part may end with '.lock'");
        }
    }
    Ok(())
}

/// Checks a space name. Spaces starting with `_` (such as `_sync`) are internal.
pub fn validate_space_name(name: &str, allow_reserved: bool) -> Result<()> {
    const WHAT: &str = "space name";
    check_common(WHAT, name, MAX_NAME_BYTES)?;
    if name.trim() != name {
        return Err(Error::invalid(
            WHAT,
            name,
            "must not start or end with whitespace",
        ));
    }
    if name.starts_with('_') && !allow_reserved {
        return Err(Error::invalid(
            WHAT,
            name,
            "spaces starting with '_' are reserved for internal use",
        ));
    }
    Ok(())
}

/// Checks a key.
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid("key", key, "must not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::invalid(
            "key",
            key,
            format!("is {} bytes; the limit is {MAX_KEY_BYTES}", key.len()),
        ));
    }
    if key.contains('\0') {
        return Err(Error::invalid("key", key, "contains a NUL byte"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names() {
        assert!(validate_branch_name("main", false).is_ok());
        assert!(validate_branch_name("agent/a-1.x", false).is_ok());
        assert!(validate_branch_name("ünïcode", false).is_ok());
        for bad in [
            "",
            " main",
            "main ",
            "_origin:x",
            "a\nb",
            "..",
            "x@12",
            "bad..name",
            "x.lock",
            "a/b.lock/c",
            "a/.hidden",
            ".hidden",
            "a//b",
            "/a",
            "a/",
            "a.",
            "a b",
            "a:b",
            "a~1",
            "a^",
            "a?",
            "a*",
            "a[b",
            "a\\b",
            "a@{1}",
            "@",
            "a\u{7f}",
        ] {
            let e = validate_branch_name(bad, false).unwrap_err().to_string();
            assert!(e.contains("invalid branch name"), "{bad:?}: {e}");
        }
        assert!(validate_branch_name("_origin:hub:main", true).is_ok());
        for good in [
            "feature/x",
            "v1.2",
            "a.b/c-d_e",
            "x@y",
            "lock.x",
            "a.locked",
        ] {
            assert!(validate_branch_name(good, false).is_ok(), "{good:?}");
        }
        assert!(validate_branch_name(&"x".repeat(256), false).is_err());
    }

    #[test]
    fn keys_and_spaces() {
        assert!(validate_key("task:1").is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key("a\0b").is_err());
        assert!(validate_space_name("default", false).is_ok());
        assert!(validate_space_name("_sync", false).is_err());
        assert!(validate_space_name("_sync", true).is_ok());
    }
}
