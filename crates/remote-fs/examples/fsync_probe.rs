//! Runs each folder-remote operation once, printing a marker line on stderr before and after it, so
//! that `strace` can count the fsyncs each one makes:
//!
//! ```sh
//! cargo build -p strata-remote-fs --example fsync_probe
//! strace -f -s 200 -e trace=fsync,fdatasync,sync_file_range,syncfs,write -o trace.txt \
//!     target/debug/examples/fsync_probe /tmp/probe-remote
//! awk '/BEGIN /{op=$0; sub(/.*BEGIN /,"",op); sub(/(\\n)?".*/,"",op); ops[++k]=op; n[op]=0}
//!      /(fsync|fdatasync|sync_file_range|syncfs)\(/{n[op]++}
//!      END{for (i=1;i<=k;i++) print n[ops[i]], ops[i]}' trace.txt
//! ```

use bytes::Bytes;
use strata_remote::{Remote, RemoteExt, RemotePath};
use strata_remote_fs::FsRemote;

fn mark(what: &str) {
    use std::io::Write;
    // One write(2) per marker, so the trace shows it whole.
    let _ = std::io::stderr().write_all(format!("{what}\n").as_bytes());
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let root = std::env::args()
        .nth(1)
        .expect("usage: fsync_probe <folder that does not exist yet>");
    let p = |s: &str| RemotePath::parse(s).unwrap();

    mark("BEGIN open");
    let r = FsRemote::new(&root).unwrap();
    mark("END open");

    mark("BEGIN reads on an empty remote");
    r.list_blobs("").await.unwrap();
    r.list_cursors("").await.unwrap();
    r.read_cursor(&p("branches/main")).await.unwrap();
    r.get_blob(&p("missing")).await.err().unwrap();
    mark("END reads on an empty remote");

    mark("BEGIN first put_blob_if_absent (new folders)");
    r.put_bytes_if_absent(&p("branches/main/deltas/1"), Bytes::from_static(b"one"))
        .await
        .unwrap();
    mark("END first put_blob_if_absent (new folders)");

    mark("BEGIN put_blob_if_absent");
    r.put_bytes_if_absent(&p("branches/main/deltas/2"), Bytes::from_static(b"two"))
        .await
        .unwrap();
    mark("END put_blob_if_absent");

    mark("BEGIN first write_cursor (create)");
    let t = r
        .write_cursor(&p("branches/main"), Bytes::from_static(b"v1"), None)
        .await
        .unwrap();
    mark("END first write_cursor (create)");

    mark("BEGIN write_cursor");
    r.write_cursor(&p("branches/main"), Bytes::from_static(b"v2"), Some(&t))
        .await
        .unwrap();
    mark("END write_cursor");

    mark("BEGIN reads");
    r.list_blobs("").await.unwrap();
    r.list_cursors("").await.unwrap();
    r.read_cursor(&p("branches/main")).await.unwrap();
    r.get_bytes(&p("branches/main/deltas/2")).await.unwrap();
    mark("END reads");

    mark("BEGIN delete_blob");
    r.delete_blob(&p("branches/main/deltas/1")).await.unwrap();
    mark("END delete_blob");
}
