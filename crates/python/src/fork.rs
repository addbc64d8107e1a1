//! [`Owned`]: a value that is dropped only by the process that made it. A forked child inherits the
//! parent's handles as copies of memory: closing their SQLite connections or rolling back their
//! transactions there would act on the parent's files behind its back, so the child leaks them.

use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};

/// A value plus the process id that owns it.
#[derive(Debug)]
pub(crate) struct Owned<T> {
    pid: u32,
    value: ManuallyDrop<T>,
}

impl<T> Owned<T> {
    pub(crate) fn new(value: T) -> Owned<T> {
        Owned {
            pid: std::process::id(),
            value: ManuallyDrop::new(value),
        }
    }

    /// Whether this process made the value (false in a forked child).
    pub(crate) fn here(&self) -> bool {
        self.pid == std::process::id()
    }

    /// The value, taken out (the caller then owns its drop).
    pub(crate) fn into_inner(mut self) -> T {
        // SAFETY: `value` is taken once and `self` is forgotten, so it is never dropped twice.
        let v = unsafe { ManuallyDrop::take(&mut self.value) };
        std::mem::forget(self);
        v
    }
}

impl<T> Deref for Owned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> DerefMut for Owned<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        if self.here() {
            // SAFETY: dropped once, here; never used again.
            unsafe { ManuallyDrop::drop(&mut self.value) }
        }
    }
}
