//! Times the phases of loading a large snapshot blob: `cargo run --release -p strata-sync --example clone_phases`.
use std::time::Instant;
use strata_engine::{Rev, Strata, Value};
use strata_sync::blob::{BlobBuilder, BlobReader};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    strata_sync::set_connector(std::sync::Arc::new(strata_remotes::Remotes::new()));
    let n = 1_000_000;
    let src = Strata::open_temp()?;
    let v = Value::from(
        serde_json::json!({"status": "done", "result": "some result text here", "n": 12345}),
    );
    let t = Instant::now();
    let mut tx = src.begin("main")?;
    for i in 0..n {
        tx.kv_put_ref(&format!("key:{i:08}"), &v)?;
    }
    tx.commit()?;
    println!("kv_put batch {n}: {:?}", t.elapsed());
    let t = Instant::now();
    let mut b = BlobBuilder::new("snapshot", "main", 0, 1)?;
    for cs in src.snapshot(&Rev::head("main"))? {
        b.push(&cs?)?;
    }
    let blob = b.finish()?;
    println!(
        "build snapshot blob ({} bytes): {:?}",
        blob.bytes,
        t.elapsed()
    );
    let t = Instant::now();
    BlobReader::verify_frames(blob.file.as_file(), "x")?;
    println!("verify frames: {:?}", t.elapsed());
    let t = Instant::now();
    let mut count = 0;
    for cs in BlobReader::open(blob.file.as_file(), "x")? {
        count += cs?.len();
    }
    println!("decode only ({count}): {:?}", t.elapsed());
    let dst = Strata::open_temp()?;
    let t = Instant::now();
    dst.replication().apply(
        "_m",
        0,
        BlobReader::open(blob.file.as_file(), "x")?.raw(),
        None,
        &[],
    )?;
    println!("apply: {:?}", t.elapsed());
    let rt = tokio::runtime::Runtime::new()?;
    let dir = tempfile::tempdir()?;
    let remote = dir.path().join("remote");
    use strata_sync::SyncExt;
    src.remote_add("hub", remote.to_str().unwrap())?;
    let t = Instant::now();
    rt.block_on(src.push("hub", "main"))?;
    println!("first push: {:?}", t.elapsed());
    let t = Instant::now();
    rt.block_on(strata_sync::clone(
        remote.to_str().unwrap(),
        dir.path().join("c"),
    ))?;
    println!("clone: {:?}", t.elapsed());
    Ok(())
}
