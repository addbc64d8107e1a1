//! Bundle export / verify / import on real files, including damaged ones.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest, Sha256};
use strata_engine::bundle::{verify_bundle, BundleManifest, BUNDLE_FORMAT_VERSION, TRAILER_LEN};
use strata_engine::*;

// ----- helpers ------------------------------------------------------------------------------------

/// A small deterministic pseudo-random generator, so that values do not compress to nothing.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn word(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| (b'a' + (self.next() % 26) as u8) as char)
            .collect()
    }
}

/// Fills `main` with every primitive, deletes, several spaces, a big multi-page commit and a fork `f`.
/// Returns main's head.
fn populate(db: &Strata) -> u64 {
    let mut rng = Lcg(7);
    let m = db.main();
    m.kv_put(
        "config",
        json!({"model": "gpt-4", "temperature": 0.7, "tags": ["a", "b"]}),
    )
    .unwrap();
    m.kv_put("bytes", Value::Bytes((0..=255u8).collect()))
        .unwrap();
    m.kv_put("neg", -123456789i64).unwrap();
    m.kv_put("float", 2.5f64).unwrap();
    m.kv_put("null", Value::Null).unwrap();
    m.json_put(
        "notes/research.md",
        json!({"title": "Research", "body": rng.word(300)}),
    )
    .unwrap();
    m.json_set_path("notes/research.md", "/findings", json!([1, 2, {"x": true}]))
        .unwrap();
    m.event_append("started", json!({"n": 1})).unwrap();
    m.event_append("progress", json!({"n": 2, "note": rng.word(50)}))
        .unwrap();
    m.state_set("status", "running").unwrap();
    m.state_cas("status", Some(&"running".into()), Some("done".into()))
        .unwrap();
    m.kv_delete("neg").unwrap();
    let other = m.space("other").unwrap();
    other.kv_put("x", 1).unwrap();
    other.event_append("ping", Value::Null).unwrap();
    // One commit bigger than a change-log page (2048 entries), so it spans several change sets.
    db.transaction("main", |t| {
        for i in 0..2500 {
            t.kv_put(&format!("bulk:{i:05}"), rng.word(24))?;
        }
        Ok(())
    })
    .unwrap();
    for i in 0..40 {
        m.kv_put(
            &format!("task:{i}"),
            json!({"status": "done", "result": rng.word(40)}),
        )
        .unwrap();
    }
    m.state_delete("status").unwrap();
    db.fork_branch(Rev::at("main", 10), "f").unwrap();
    db.on("f").kv_put("only-on-fork", "yes").unwrap();
    db.on("f").kv_delete("config").unwrap();
    db.branch_info("main").unwrap().head
}

/// The change sets of a branch, without their commit metadata (bundles do not carry it: imported
/// versions are recorded as `import`).
fn changes(db: &Strata, branch: &str, after: u64) -> Vec<ChangeSet> {
    db.changes_since(branch, after)
        .unwrap()
        .map(|c| {
            c.map(|mut c| {
                c.meta = None;
                c
            })
        })
        .collect::<Result<Vec<_>>>()
        .unwrap()
}

/// Live contents of a branch, read through the public API of every primitive.
fn contents(db: &Strata, branch: &str) -> Vec<String> {
    let mut out = Vec::new();
    for space in db.list_spaces(branch).unwrap() {
        let s = db.on(branch).space(&space).unwrap();
        out.push(format!("{space} kv {:?}", s.kv_list("").unwrap()));
        out.push(format!("{space} json {:?}", s.json_list("").unwrap()));
        out.push(format!(
            "{space} events {:?}",
            s.event_range(1, usize::MAX).unwrap()
        ));
        out.push(format!(
            "{space} status {:?}",
            s.state_get("status").unwrap()
        ));
    }
    out
}

/// Branch names and heads, internal ones included.
fn snapshot(db: &Strata) -> Vec<(String, u64)> {
    db.list_branches(true)
        .unwrap()
        .into_iter()
        .map(|b| (b.name, b.head))
        .collect()
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// The decompressed tar of a bundle split into its entries: (name, bytes).
fn unpack(bundle: &[u8]) -> Vec<(String, Vec<u8>)> {
    // decode_all skips the trailer, which is a zstd skippable frame.
    let tar_bytes = zstd::stream::decode_all(bundle).unwrap();
    let mut ar = tar::Archive::new(&tar_bytes[..]);
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8(e.path_bytes().to_vec()).unwrap();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push((name, data));
    }
    out
}

/// Packs entries by hand exactly as docs/format.md describes: tar, one zstd frame with a content
/// checksum, then the trailer (a skippable frame holding the SHA-256 of everything before it).
fn pack(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        tar.append(&h, *data).unwrap();
    }
    let tar_bytes = tar.into_inner().unwrap();
    let mut enc = zstd::Encoder::new(Vec::new(), 3).unwrap();
    enc.include_checksum(true).unwrap();
    std::io::copy(&mut &tar_bytes[..], &mut enc).unwrap();
    let mut out = enc.finish().unwrap();
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&0x184D_2A5Bu32.to_le_bytes());
    out.extend_from_slice(&40u32.to_le_bytes());
    out.extend_from_slice(b"STRATAB1");
    out.extend_from_slice(&digest);
    out
}

fn manifest_of(bundle: &[u8]) -> (serde_json::Value, Vec<u8>) {
    let entries = unpack(bundle);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].0, "manifest.json");
    assert_eq!(entries[1].0, "branchlog.bin");
    (
        serde_json::from_slice(&entries[0].1).unwrap(),
        entries[1].1.clone(),
    )
}

struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    src: Strata,
    head: u64,
    good: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let src = Strata::open(path.join("src")).unwrap();
    let head = populate(&src);
    let good = path.join("main.branchbundle.tar.zst");
    src.export_bundle("main", None, &good).unwrap();
    Fixture {
        dir: path,
        _dir: dir,
        src,
        head,
        good,
    }
}

/// A target database with some state of its own: an empty `main`, and a branch `other` with data.
fn target(dir: &Path, name: &str) -> Strata {
    let db = Strata::open(dir.join(name)).unwrap();
    db.create_branch("other").unwrap();
    db.on("other").kv_put("mine", 1).unwrap();
    db.on("other").kv_put("mine", 2).unwrap();
    db
}

/// Asserts that `bytes`, written to a file, is refused by verify and by import (both into a new branch
/// and into the existing empty `main`), that the import error is the verify error, that the message
/// contains one of `needles`, and that the database is unchanged.
fn assert_refused(dir: &Path, db: &Strata, bytes: &[u8], label: &str, needles: &[&str]) -> String {
    let path = dir.join("bad.branchbundle.tar.zst");
    std::fs::write(&path, bytes).unwrap();
    let before = snapshot(db);
    let other_before = changes(db, "other", 0);
    let err = match verify_bundle(&path) {
        Ok(m) => panic!("{label}: verify accepted a damaged bundle: {m:?}"),
        Err(e) => e,
    };
    assert!(
        matches!(err, Error::Corrupt { .. }),
        "{label}: not a corrupt error: {err:?}"
    );
    let msg = err.to_string();
    assert!(msg.starts_with("corrupt bundle "), "{label}: {msg}");
    assert!(
        msg.contains(&path.display().to_string()),
        "{label}: message does not name the file: {msg}"
    );
    assert!(
        needles.iter().any(|n| msg.contains(n)),
        "{label}: {msg:?} contains none of {needles:?}"
    );
    for target in [Some("restored"), None] {
        let e = db.import_bundle(&path, target).expect_err(label);
        assert_eq!(e.to_string(), msg, "{label}: import and verify disagree");
        assert_eq!(snapshot(db), before, "{label}: the database changed");
    }
    assert!(
        !db.branch_exists("restored").unwrap(),
        "{label}: target branch was created"
    );
    assert_eq!(changes(db, "other", 0), other_before, "{label}");
    msg
}

// ----- round trips --------------------------------------------------------------------------------

#[test]
fn whole_branch_roundtrip_into_fresh_database() {
    let fx = fixture();
    let m = verify_bundle(&fx.good).unwrap();
    let src_changes = changes(&fx.src, "main", 0);
    assert_eq!(m.format_version, BUNDLE_FORMAT_VERSION);
    assert_eq!(
        (m.branch.as_str(), m.from_version, m.to_version),
        ("main", 0, fx.head)
    );
    assert_eq!(
        m.version_count,
        fx.src.log("main", usize::MAX).unwrap().len() as u64
    );
    assert_eq!(
        m.entry_count,
        src_changes.iter().map(|c| c.len() as u64).sum::<u64>()
    );
    assert_eq!(m.record_count, src_changes.len() as u64);
    assert!(
        m.record_count > m.version_count,
        "the bulk commit spans several records"
    );
    let (json_manifest, branchlog) = manifest_of(&read(&fx.good));
    assert_eq!(
        serde_json::from_value::<BundleManifest>(json_manifest).unwrap(),
        m
    );
    assert_eq!(m.branchlog_bytes, branchlog.len() as u64);
    assert_eq!(m.branchlog_sha256, hex::encode(Sha256::digest(&branchlog)));

    let dst = Strata::open(fx.dir.join("dst")).unwrap();
    let r = dst.import_bundle(&fx.good, None).unwrap();
    assert_eq!(r.branch, "main");
    assert!(!r.created, "main already existed (empty)");
    assert_eq!(
        (r.versions, r.entries, r.head),
        (m.version_count, m.entry_count, fx.head)
    );
    assert_eq!(
        changes(&dst, "main", 0),
        src_changes,
        "versions, timestamps and entries are kept"
    );
    assert_eq!(contents(&dst, "main"), contents(&fx.src, "main"));
    assert_eq!(dst.log("main", 1).unwrap()[0].kind, "import");

    // Into a new branch of the source database itself: diff is empty.
    let r = fx.src.import_bundle(&fx.good, Some("copy")).unwrap();
    assert!(r.created);
    assert!(fx
        .src
        .diff(&Rev::head("main"), &Rev::head("copy"))
        .unwrap()
        .is_empty());
    // Importing the same bundle again does not follow the head: refused, nothing changes.
    let before = snapshot(&dst);
    let e = dst.import_bundle(&fx.good, None).unwrap_err().to_string();
    assert!(
        e.contains("head must be 0") && e.contains(&format!("but it is {}", fx.head)),
        "{e}"
    );
    assert_eq!(snapshot(&dst), before);
}

#[test]
fn fork_exports_its_inherited_history() {
    let fx = fixture();
    let path = fx.dir.join("f.branchbundle.tar.zst");
    let m = fx.src.export_bundle("f", None, &path).unwrap();
    assert_eq!((m.from_version, m.to_version), (0, 12));
    let dst = Strata::open_temp().unwrap();
    let r = dst.import_bundle(&path, None).unwrap();
    assert!(r.created);
    assert_eq!(r.head, 12);
    assert_eq!(changes(&dst, "f", 0), changes(&fx.src, "f", 0));
    assert_eq!(contents(&dst, "f"), contents(&fx.src, "f"));
    assert_eq!(
        dst.on("f").kv_get("only-on-fork").unwrap(),
        Some("yes".into())
    );
    assert_eq!(dst.on("f").kv_get("config").unwrap(), None);
}

#[test]
fn version_ranges_import_in_steps_and_into_new_branches() {
    let fx = fixture();
    let (a, b) = (
        fx.dir.join("a.branchbundle.tar.zst"),
        fx.dir.join("b.branchbundle.tar.zst"),
    );
    let ma = fx.src.export_bundle("main", Some((0, 9)), &a).unwrap();
    let mb = fx
        .src
        .export_bundle("main", Some((9, fx.head)), &b)
        .unwrap();
    assert_eq!(
        (ma.from_version, ma.to_version, ma.version_count),
        (0, 9, 9)
    );
    assert_eq!((mb.from_version, mb.to_version), (9, fx.head));
    assert_eq!(verify_bundle(&b).unwrap(), mb);

    // Second half first: the existing main (head 0) does not match the range start 9.
    let dst = Strata::open_temp().unwrap();
    let before = snapshot(&dst);
    let e = dst.import_bundle(&b, None).unwrap_err();
    assert!(matches!(e, Error::InvalidOperation(_)), "{e:?}");
    assert!(e.to_string().contains("head must be 9, but it is 0"), "{e}");
    assert_eq!(snapshot(&dst), before);

    // In order: the second import continues from the first one's head.
    let r = dst.import_bundle(&a, None).unwrap();
    assert_eq!((r.head, r.versions), (9, 9));
    assert_eq!(contents(&dst, "main"), {
        let probe = Strata::open_temp().unwrap();
        probe
            .apply_changes(
                "main",
                fx.src.changes_between(&Rev::at("main", 9), 0).unwrap(),
            )
            .unwrap();
        contents(&probe, "main")
    });
    let r = dst.import_bundle(&b, None).unwrap();
    assert_eq!(r.head, fx.head);
    assert_eq!(changes(&dst, "main", 0), changes(&fx.src, "main", 0));
    assert_eq!(contents(&dst, "main"), contents(&fx.src, "main"));

    // A range into a fresh branch: it holds just those versions, numbered as in the source.
    let fresh = Strata::open_temp().unwrap();
    let r = fresh.import_bundle(&b, Some("tail")).unwrap();
    assert!(r.created);
    assert_eq!(changes(&fresh, "tail", 0), changes(&fx.src, "main", 9));

    // Into an existing fork whose head is the range start.
    let r = fx.src.import_bundle(&b, Some("f")).unwrap_err();
    assert!(
        r.to_string().contains("head must be 9, but it is 12"),
        "{r}"
    );
    fx.src.fork_branch(Rev::at("main", 9), "at9").unwrap();
    fx.src.import_bundle(&b, Some("at9")).unwrap();
    assert!(fx
        .src
        .diff(&Rev::head("main"), &Rev::head("at9"))
        .unwrap()
        .is_empty());
}

#[test]
fn empty_range_bundle() {
    let fx = fixture();
    let p = fx.dir.join("empty.branchbundle.tar.zst");
    let m = fx.src.export_bundle("main", Some((5, 5)), &p).unwrap();
    assert_eq!(
        (
            m.record_count,
            m.entry_count,
            m.version_count,
            m.branchlog_bytes
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(verify_bundle(&p).unwrap(), m);
    let dst = Strata::open_temp().unwrap();
    let r = dst.import_bundle(&p, Some("e")).unwrap();
    assert!(r.created);
    assert_eq!((r.versions, r.head), (0, 0));
}

#[test]
fn export_validates_its_arguments_and_writes_atomically() {
    let fx = fixture();
    let p = fx.dir.join("x.branchbundle.tar.zst");
    let e = fx
        .src
        .export_bundle("main", Some((0, fx.head + 1)), &p)
        .unwrap_err();
    assert!(matches!(e, Error::VersionNotFound { .. }), "{e:?}");
    let e = fx.src.export_bundle("main", Some((5, 4)), &p).unwrap_err();
    assert!(e.to_string().contains("invalid bundle range (5, 4]"), "{e}");
    let e = fx.src.export_bundle("nope", None, &p).unwrap_err();
    assert!(matches!(e, Error::BranchNotFound(_)), "{e:?}");
    let e = fx
        .src
        .export_bundle("main", None, &fx.dir.join("no/such/dir/x.tar.zst"))
        .unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    assert!(!p.exists());

    // Export replaces an existing file, and leaves no temporary files behind.
    let out = fx.dir.join("out");
    std::fs::create_dir(&out).unwrap();
    let p = out.join("b.branchbundle.tar.zst");
    std::fs::write(&p, b"old").unwrap();
    fx.src.export_bundle("main", Some((0, 3)), &p).unwrap();
    verify_bundle(&p).unwrap();
    let names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("b.branchbundle.tar.zst")]
    );
}

#[test]
fn bundle_file_layout() {
    let fx = fixture();
    let bytes = read(&fx.good);
    // One zstd frame with the content-checksum flag, no dictionary.
    assert_eq!(&bytes[..4], &0xFD2F_B528u32.to_le_bytes());
    assert_eq!(bytes[4] & 0x04, 0x04, "content checksum flag");
    assert_eq!(bytes[4] & 0x03, 0, "no dictionary id");
    // The trailer: skippable frame, size 40, tag, SHA-256 of everything before it.
    let n = bytes.len() - TRAILER_LEN as usize;
    let t = &bytes[n..];
    assert_eq!(&t[..4], &0x184D_2A5Bu32.to_le_bytes());
    assert_eq!(&t[4..8], &40u32.to_le_bytes());
    assert_eq!(&t[8..16], b"STRATAB1");
    assert_eq!(&t[16..], Sha256::digest(&bytes[..n]).as_slice());
    // Repacking by hand per docs/format.md gives a bundle this build accepts.
    let (mf, log) = manifest_of(&bytes);
    let json = serde_json::to_vec(&mf).unwrap();
    let p = fx.dir.join("repacked.branchbundle.tar.zst");
    std::fs::write(
        &p,
        pack(&[("manifest.json", &json), ("branchlog.bin", &log)]),
    )
    .unwrap();
    verify_bundle(&p).unwrap();
}

/// Tar entries for [`pack`]: (name, content).
type TarEntries<'a> = Vec<(&'a str, &'a [u8])>;

// ----- damaged files ------------------------------------------------------------------------------

/// About `n` offsets spread over `0..len`, plus the first and last few bytes.
fn sample_offsets(len: usize, n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).map(|i| i * len / n).collect();
    v.extend([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    v.extend((1..=50).map(|k| len - k));
    v.sort_unstable();
    v.dedup();
    v.retain(|&o| o < len);
    v
}

#[test]
fn truncated_files_are_refused() {
    let fx = fixture();
    let bytes = read(&fx.good);
    assert!(
        bytes.len() > 20_000,
        "the fixture should span several zstd blocks ({} bytes)",
        bytes.len()
    );
    let db = target(&fx.dir, "t1");
    let mut tried = 0;
    for cut in sample_offsets(bytes.len(), 40) {
        assert_refused(
            &fx.dir,
            &db,
            &bytes[..cut],
            &format!("cut at {cut}"),
            &["truncated"],
        );
        tried += 1;
    }
    assert!(tried >= 90);
}

#[test]
fn flipped_bits_are_refused() {
    let fx = fixture();
    let bytes = read(&fx.good);
    let db = target(&fx.dir, "t2");
    for (i, off) in sample_offsets(bytes.len(), 60).into_iter().enumerate() {
        let mut b = bytes.clone();
        b[off] ^= 1 << (i % 8);
        assert_refused(
            &fx.dir,
            &db,
            &b,
            &format!("bit {} at {off}", i % 8),
            &["corrupt"],
        );
    }
    // Bit 4 of the zstd frame header descriptor is "unused": zstd itself ignores it, so only the
    // trailer's checksum can notice the flip.
    let mut b = bytes.clone();
    b[4] ^= 0x10;
    let msg = assert_refused(
        &fx.dir,
        &db,
        &b,
        "unused header bit",
        &["checksum mismatch"],
    );
    assert!(msg.contains("file checksum mismatch"), "{msg}");
    // Raising the window size is also invisible to zstd.
    let mut b = bytes.clone();
    b[5] += 0x08;
    assert_refused(&fx.dir, &db, &b, "window size", &["file checksum mismatch"]);
}

#[test]
fn unsupported_format_version_is_refused() {
    let fx = fixture();
    let db = target(&fx.dir, "t3");
    let (mut mf, log) = manifest_of(&read(&fx.good));
    mf["format_version"] = json!(9);
    let bad = pack(&[
        ("manifest.json", &serde_json::to_vec(&mf).unwrap()),
        ("branchlog.bin", &log),
    ]);
    let msg = assert_refused(&fx.dir, &db, &bad, "format 9", &["format version"]);
    assert!(
        msg.ends_with("unsupported bundle format version 9 (this build reads 1)"),
        "{msg}"
    );
}

#[test]
fn manifests_that_disagree_with_the_branchlog_are_refused() {
    let fx = fixture();
    let db = target(&fx.dir, "t4");
    let (mf, log) = manifest_of(&read(&fx.good));
    let entries = mf["entry_count"].as_u64().unwrap();
    let head = mf["to_version"].as_u64().unwrap();
    let cases: Vec<(&str, serde_json::Value, String)> = vec![
        (
            "entry_count",
            json!(entries + 1),
            format!(
                "manifest says {} entries but branchlog holds {entries}",
                entries + 1
            ),
        ),
        (
            "version_count",
            json!(3),
            "manifest says 3 versions but branchlog holds".into(),
        ),
        (
            "record_count",
            json!(1),
            "manifest says 1 records but branchlog holds".into(),
        ),
        (
            "branchlog_sha256",
            json!("ab".repeat(32)),
            "branchlog checksum mismatch: manifest says sha256 abab".into(),
        ),
        (
            "branchlog_sha256",
            json!("not hex"),
            "is not 64 lowercase hex digits".into(),
        ),
        (
            "branchlog_bytes",
            json!(12),
            "manifest says 12 bytes but the branchlog.bin tar entry holds".into(),
        ),
        (
            "to_version",
            json!(head - 1),
            format!(
                "version {head} is outside the manifest's range (0, {}]",
                head - 1
            ),
        ),
        (
            "from_version",
            json!(2),
            "version 1 is outside the manifest's range (2,".into(),
        ),
        (
            "from_version",
            json!(head + 1),
            "is empty or reversed".into(),
        ),
        (
            "branch",
            json!("bad@12"),
            "manifest names an unusable branch".into(),
        ),
        (
            "format_version",
            json!("one"),
            "manifest.json is not a valid bundle manifest".into(),
        ),
    ];
    for (field, value, needle) in cases {
        let mut m = mf.clone();
        m[field] = value;
        let bad = pack(&[
            ("manifest.json", &serde_json::to_vec(&m).unwrap()),
            ("branchlog.bin", &log),
        ]);
        assert_refused(&fx.dir, &db, &bad, field, &[&needle]);
    }
}

#[test]
fn damaged_branchlog_and_tar_layouts_are_refused() {
    let fx = fixture();
    let db = target(&fx.dir, "t5");
    let (mf, log) = manifest_of(&read(&fx.good));
    let json = serde_json::to_vec(&mf).unwrap();
    let first_len = u32::from_le_bytes(log[..4].try_into().unwrap()) as usize;

    // A CRC error in record 1, with all outer checksums recomputed.
    let mut bad_log = log.clone();
    bad_log[first_len + 8 + 6] ^= 0x01;
    let mut m = mf.clone();
    m["branchlog_sha256"] = json!(hex::encode(Sha256::digest(&bad_log)));
    let bad = pack(&[
        ("manifest.json", &serde_json::to_vec(&m).unwrap()),
        ("branchlog.bin", &bad_log),
    ]);
    let msg = assert_refused(
        &fx.dir,
        &db,
        &bad,
        "record crc",
        &["branchlog record 1: crc32 mismatch"],
    );
    assert!(
        msg.contains("stored 0x") && msg.contains("computed 0x"),
        "{msg}"
    );

    // Well-framed records whose content would not import: an event key that is not 20 digits.
    let mut cs = ChangeSet {
        version: 1,
        timestamp_micros: 1,
        puts: vec![],
        deletes: vec![],
        meta: None,
    };
    cs.puts
        .push((EntryKey::new("default", Kind::Event, "42"), Value::Null));
    let mut one = Vec::new();
    strata_engine::codec::write_record(&mut one, &cs).unwrap();
    let mut m = mf.clone();
    for (f, v) in [
        ("version_count", 1),
        ("entry_count", 1),
        ("record_count", 1),
    ] {
        m[f] = json!(v);
    }
    m["branchlog_bytes"] = json!(one.len());
    m["branchlog_sha256"] = json!(hex::encode(Sha256::digest(&one)));
    let bad = pack(&[
        ("manifest.json", &serde_json::to_vec(&m).unwrap()),
        ("branchlog.bin", &one),
    ]);
    let msg = assert_refused(
        &fx.dir,
        &db,
        &bad,
        "event key",
        &["branchlog record 0: entry default/event/42"],
    );
    assert!(msg.contains("must be 20 decimal digits"), "{msg}");

    // The branchlog cut inside its last record (manifest adjusted to match).
    let cut = &log[..log.len() - 3];
    let mut m = mf.clone();
    m["branchlog_bytes"] = json!(cut.len());
    m["branchlog_sha256"] = json!(hex::encode(Sha256::digest(cut)));
    let bad = pack(&[
        ("manifest.json", &serde_json::to_vec(&m).unwrap()),
        ("branchlog.bin", cut),
    ]);
    assert_refused(&fx.dir, &db, &bad, "short branchlog", &["truncated crc32"]);

    let layouts: Vec<(&str, TarEntries<'_>, &str)> = vec![
        (
            "swapped",
            vec![("branchlog.bin", &log), ("manifest.json", &json)],
            "tar entry 0 is \"branchlog.bin\"; expected manifest.json",
        ),
        (
            "extra",
            vec![
                ("manifest.json", &json),
                ("branchlog.bin", &log),
                ("x", b"1"),
            ],
            "unexpected extra tar entry \"x\"",
        ),
        (
            "missing",
            vec![("manifest.json", &json)],
            "branchlog.bin is missing",
        ),
        ("empty", vec![], "the tar archive is empty"),
        (
            "renamed",
            vec![("manifest.json", &json), ("log.bin", &log)],
            "tar entry 1 is \"log.bin\"; expected branchlog.bin",
        ),
    ];
    for (label, entries, needle) in layouts {
        assert_refused(&fx.dir, &db, &pack(&entries), label, &[needle]);
    }

    // No trailer: a plain tar.zst is not a bundle.
    let good = read(&fx.good);
    let plain = &good[..good.len() - TRAILER_LEN as usize];
    assert_refused(&fx.dir, &db, plain, "no trailer", &["not a Strata bundle"]);
    // Bytes between the frame and the trailer.
    let mut padded = plain.to_vec();
    padded.extend_from_slice(b"junk");
    let digest = Sha256::digest(&padded);
    padded.extend_from_slice(&good[good.len() - 48..good.len() - 32]);
    padded.extend_from_slice(&digest);
    assert_refused(
        &fx.dir,
        &db,
        &padded,
        "junk before trailer",
        &["4 unexpected bytes between the zstd frame"],
    );
    // Not even a file.
    let e = verify_bundle(&fx.dir.join("missing.tar.zst")).unwrap_err();
    assert!(
        matches!(e, Error::Io(_)) && e.to_string().contains("missing.tar.zst"),
        "{e}"
    );
}
