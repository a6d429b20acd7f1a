//! A counting global allocator: live bytes, the peak of one input, and a
//! limit on how far one input may make live memory grow. Crossing the limit
//! is a finding: the allocator reports the target and input (and writes the
//! input to the crash directory) and aborts, since an allocation failure
//! cannot be unwound.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

pub struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static BASE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
static REPORTING: AtomicBool = AtomicBool::new(false);

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[inline]
fn grow(size: usize) {
    let live = LIVE.fetch_add(size, Relaxed) + size;
    PEAK.fetch_max(live, Relaxed);
    let base = BASE.load(Relaxed);
    if live.saturating_sub(base) > LIMIT.load(Relaxed) && !REPORTING.swap(true, Relaxed) {
        LIVE.fetch_sub(size, Relaxed);
        crate::runner::abort_with_finding(&format!(
            "memory: one input made live memory grow by {} bytes (allocation of {size} bytes), \
             over the limit of {} bytes",
            live - base,
            LIMIT.load(Relaxed)
        ));
    }
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            grow(new_size - layout.size());
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Relaxed);
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Sets how many bytes one input may add to live memory.
pub fn set_limit(bytes: usize) {
    LIMIT.store(bytes, Relaxed);
}

/// Starts measuring one input; returns the live bytes before it.
pub fn start_input() -> usize {
    let live = LIVE.load(Relaxed);
    BASE.store(live, Relaxed);
    PEAK.store(live, Relaxed);
    live
}

/// The largest growth of live memory since [`start_input`] returned `base`.
pub fn peak_growth(base: usize) -> usize {
    PEAK.load(Relaxed).saturating_sub(base)
}

/// Live bytes now.
pub fn live() -> usize {
    LIVE.load(Relaxed)
}
