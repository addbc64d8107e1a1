//! The process's tokio runtime: one per process, created on first use and created again in a child
//! after `fork()` (the parent's worker threads do not exist there; blocking on its runtime would hang).
//!
//! No lock guards it: a lock held by another thread at the instant of a fork stays locked forever in
//! the child. The runtime lives in a leaked allocation tagged with the process id and published with
//! a compare-and-swap; a child sees a foreign process id and builds its own.

use std::sync::atomic::{AtomicPtr, Ordering};

use tokio::runtime::Runtime;

use crate::errors::Failure;

struct Slot {
    pid: u32,
    rt: Runtime,
}

/// The current process's runtime (or an inherited one, which is never used nor freed).
static CURRENT: AtomicPtr<Slot> = AtomicPtr::new(std::ptr::null_mut());

/// This process's runtime, building it (again, after a fork) when needed.
pub(crate) fn runtime() -> Result<&'static Runtime, Failure> {
    let pid = std::process::id();
    loop {
        let cur = CURRENT.load(Ordering::Acquire);
        // SAFETY: a published slot is leaked, never freed: the pointer stays valid forever.
        if let Some(slot) = unsafe { cur.as_ref() } {
            if slot.pid == pid {
                return Ok(&slot.rt);
            }
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("stratadb-runtime")
            .build()
            .map_err(|e| Failure::Other(format!("cannot start the async runtime: {e}")))?;
        let fresh = Box::into_raw(Box::new(Slot { pid, rt }));
        match CURRENT.compare_exchange(cur, fresh, Ordering::AcqRel, Ordering::Acquire) {
            // The inherited slot (if any) is left leaked: its destructor would wait for worker
            // threads that only exist in the parent.
            Ok(_) => {}
            Err(_) => {
                // Another thread of this process published first: use that one.
                // SAFETY: `fresh` was never published, so this thread owns it.
                drop(unsafe { Box::from_raw(fresh) });
            }
        }
    }
}

/// Called in a forked child (`os.register_at_fork`): forget the parent's runtime now (the process
/// id check in [`runtime`] would do the same at the next sync call).
pub(crate) fn after_fork_in_child() {
    let cur = CURRENT.load(Ordering::Acquire);
    // SAFETY: as in `runtime`.
    if let Some(slot) = unsafe { cur.as_ref() } {
        if slot.pid != std::process::id() {
            let _ = CURRENT.compare_exchange(
                cur,
                std::ptr::null_mut(),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }
}

/// Runs a future to completion on the process runtime (call with the GIL released).
pub(crate) fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, Failure> {
    Ok(runtime()?.block_on(f))
}
