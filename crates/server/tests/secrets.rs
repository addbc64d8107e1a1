//! Remote tokens live in the database (internal branch `_strata`, space `_sync`) and never leave a
//! server: no wire command reads an internal space, listings and change sets leave them out, and
//! internal branches are not exported. A real server on 127.0.0.1 port 0.

mod support;

use strata_client::{Db, ErrorCode, Kind, RemoteConfig, Rev};
use support::{add_key, opts, ServerProc};

#[test]
fn tokens_never_leave_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    let admin = add_key(&data, "admin", &[], &["*"]);
    let srv = ServerProc::start(&data, &[]);
    let db = Db::connect(&srv.url(), opts(Some(&admin))).unwrap();
    let token = "TOKEN-never-on-the-wire-0042";
    db.remote_add(RemoteConfig {
        name: "hub".into(),
        url: "http://127.0.0.1:9/v1/projects/p".into(),
        options: [("token".to_string(), token.to_string())].into(),
    })
    .unwrap();
    db.main().kv_put("a", 1).unwrap();
    let listed = db.remote_list().unwrap();
    assert_eq!(listed.remotes[0].options["token"], "***");

    let meta = "_strata";
    let head = db.branch_info(meta).unwrap().head;
    assert!(head >= 1);
    let refused = |e: strata_client::Error| {
        assert_eq!(e.code(), Some(ErrorCode::InvalidName), "{e}");
        assert!(!e.to_string().contains(token));
    };
    refused(
        db.history(meta, "_sync", Kind::Kv, "remote/hub")
            .unwrap_err(),
    );
    refused(
        db.get_at(&Rev::head(meta), "_sync", Kind::Kv, "remote/hub")
            .unwrap_err(),
    );
    refused(
        db.list_page(&Rev::head(meta), "_sync", Kind::Kv, "", None, 100)
            .unwrap_err(),
    );
    let sets = db.changes(&Rev::at(meta, head), 0, 1000).unwrap();
    assert!(!format!("{sets:?}").contains(token), "{sets:?}");
    let d = db.diff(&Rev::at(meta, 0), &Rev::head(meta));
    if let Ok(d) = d {
        assert!(!format!("{d:?}").contains(token), "{d:?}");
    }
    let out = dir.path().join("meta.branchbundle.tar.zst");
    refused(db.export_bundle(meta, None, &out).unwrap_err());
    assert!(!out.exists());
}
