//! `FsRemote::from_url` and `Display`.

use strata_remote::RemoteError;
use strata_remote_fs::FsRemote;

#[test]
fn accepted_forms_open_the_same_folder() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("remote");
    let abs = root.to_str().expect("a UTF-8 temporary folder");
    for url in [
        format!("file://{abs}"),
        format!("FILE://{abs}"),
        format!("file://localhost{abs}"),
        format!("file:{abs}"),
        abs.to_string(),
    ] {
        let r = FsRemote::from_url(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(r.root(), root, "{url}");
        assert_eq!(strata_remote_fs::parse_url(&url).unwrap(), root, "{url}");
        assert!(!root.exists(), "opening creates nothing");
    }
}

#[test]
fn relative_paths_are_made_absolute() {
    let d = tempfile::tempdir().unwrap();
    let old = std::env::current_dir().unwrap();
    // The only test in this binary that depends on the current folder.
    std::env::set_current_dir(d.path()).unwrap();
    let opened = FsRemote::from_url("rel/remote");
    let plain = FsRemote::new("rel/other");
    std::env::set_current_dir(old).unwrap();

    let r = opened.unwrap();
    assert!(r.root().is_absolute());
    assert_eq!(
        r.root(),
        std::path::absolute(d.path()).unwrap().join("rel/remote")
    );
    assert!(!d.path().join("rel").exists(), "opening creates nothing");
    assert!(plain.unwrap().root().ends_with("rel/other"));
}

#[test]
fn percent_escapes_are_decoded() {
    let d = tempfile::tempdir().unwrap();
    let abs = d.path().to_str().unwrap();
    let r = FsRemote::from_url(&format!("file://{abs}/my%20remote%23")).unwrap();
    assert_eq!(r.root(), d.path().join("my remote#"));
}

#[test]
fn rejected_forms_name_the_url() {
    for url in [
        "",
        "s3://bucket/prefix",
        "http://example.com/x",
        "https://example.com/x",
        "file://host/path",
        "file://example.com/tmp/x",
        "file://",
        "file:",
        "file://localhost",
        "file:relative/path",
        "file:///tmp/x?query",
        "file:///tmp/x#frag",
        "file:///tmp/bad%zzescape",
        "file:///tmp/short%2",
        "file:///tmp/nul%00byte",
    ] {
        match FsRemote::from_url(url) {
            Err(RemoteError::Invalid(msg)) => {
                assert!(msg.contains(&format!("{url:?}")), "{url}: {msg}")
            }
            other => panic!("{url:?} should be rejected as invalid, got {other:?}"),
        }
        // The check that touches nothing refuses exactly the same.
        match strata_remote_fs::parse_url(url) {
            Err(RemoteError::Invalid(msg)) => {
                assert!(msg.contains(&format!("{url:?}")), "{url}: {msg}")
            }
            other => panic!("parse_url({url:?}) should be rejected as invalid, got {other:?}"),
        }
    }
}

#[test]
fn display_is_a_file_url_that_opens_the_same_folder() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("remote");
    let r = FsRemote::new(&root).unwrap();
    assert_eq!(r.to_string(), format!("file://{}", root.display()));
    assert_eq!(r.to_string(), r.url());
    assert_eq!(FsRemote::from_url(&r.to_string()).unwrap().root(), root);

    // Characters that would not survive parsing are escaped.
    let odd = d.path().join("a b%c?d#e");
    let r = FsRemote::new(&odd).unwrap();
    let shown = r.to_string();
    assert!(
        shown.starts_with("file:///") && shown.ends_with("/a%20b%25c%3Fd%23e"),
        "{shown}"
    );
    assert_eq!(FsRemote::from_url(&shown).unwrap().root(), odd);

    // Also through the trait object.
    let dynr: std::sync::Arc<dyn strata_remote::Remote> = std::sync::Arc::new(r);
    assert_eq!(dynr.to_string(), shown);
}
