//! A counting global allocator that turns an allocation bomb into a report instead of a dead
//! machine.
//!
//! It wraps the system allocator and tracks the bytes currently live and the peak since the
//! last [`reset_peak`]. Two limits apply:
//!
//! * a *hard* limit, checked on every request: a single allocation larger than
//!   [`hard_limit`], or one that would take the live total above twice that, is refused. The
//!   allocator first writes one line naming the size to stderr (the fuzzer's supervisor reads it
//!   back from the dead worker's log), then returns null, and the standard library aborts the
//!   process. Refusing at the request is what keeps a forged `u32::MAX`-sized header from ever
//!   touching the machine's memory;
//! * a *soft* budget, checked after each input by the harness: the per-input peak of live bytes
//!   ([`peak_since_reset`]) is compared with the budget, which catches growth made of many
//!   allocations that each look harmless.
//!
//! The counters are process-wide (every thread's allocations count), which is what matters: a
//! server's decode runs on a pool thread, not on the caller's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Default budget: 512 MiB, far above anything one request legitimately needs (the largest
/// legitimate buffers are a few 15 s windows and a 50 MB upload held twice).
pub const DEFAULT_BUDGET: usize = 512 << 20;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static HARD_LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Set while the refusal message is being written, so that any allocation it makes itself is
/// served normally instead of recursing into another refusal.
static REPORTING: AtomicBool = AtomicBool::new(false);

/// The counting allocator; install with `#[global_allocator]`.
pub struct Counting;

/// Arms the hard limit (a single allocation above `bytes`, or a live total above twice it, is
/// refused). Until called, nothing is refused and only counting happens.
pub fn set_hard_limit(bytes: usize) {
    HARD_LIMIT.store(bytes, Ordering::Relaxed);
}

/// The hard limit in force.
pub fn hard_limit() -> usize {
    HARD_LIMIT.load(Ordering::Relaxed)
}

/// Starts a new peak measurement at the current live total; returns that baseline.
pub fn reset_peak() -> usize {
    let now = LIVE.load(Ordering::Relaxed);
    PEAK.store(now, Ordering::Relaxed);
    now
}

/// Growth of the peak over `baseline` (from [`reset_peak`]).
pub fn peak_since_reset(baseline: usize) -> usize {
    PEAK.load(Ordering::Relaxed).saturating_sub(baseline)
}

/// Whether a block of `size` bytes that grows the live total by `growth` breaks the hard limit.
fn refused(size: usize, growth: usize) -> bool {
    let limit = HARD_LIMIT.load(Ordering::Relaxed);
    if limit == usize::MAX || REPORTING.load(Ordering::Relaxed) {
        return false;
    }
    size > limit || LIVE.load(Ordering::Relaxed).saturating_add(growth) > limit.saturating_mul(2)
}

/// Writes the refusal line without allocating (a fixed stack buffer; `Stderr` is unbuffered).
fn report_refusal(size: usize) {
    if REPORTING.swap(true, Ordering::SeqCst) {
        return;
    }
    struct Buf {
        bytes: [u8; 200],
        len: usize,
    }
    impl std::fmt::Write for Buf {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let room = self.bytes.len() - self.len;
            let n = s.len().min(room);
            self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
            Ok(())
        }
    }
    let mut buf = Buf {
        bytes: [0; 200],
        len: 0,
    };
    let _ = std::fmt::Write::write_fmt(
        &mut buf,
        format_args!(
            "fuzz-alloc: refused an allocation of {size} bytes with {} live (limit {} per \
             allocation, {} live)\n",
            LIVE.load(Ordering::Relaxed),
            hard_limit(),
            hard_limit().saturating_mul(2)
        ),
    );
    let _ = std::io::stderr().write_all(&buf.bytes[..buf.len]);
    REPORTING.store(false, Ordering::SeqCst);
}

fn count_alloc(size: usize) {
    let now = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's layout and pointer unchanged; the
// bookkeeping only touches atomics, and a refusal returns null, which `GlobalAlloc` allows.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if refused(layout.size(), layout.size()) {
            report_refusal(layout.size());
            return std::ptr::null_mut();
        }
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count_alloc(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if refused(layout.size(), layout.size()) {
            report_refusal(layout.size());
            return std::ptr::null_mut();
        }
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count_alloc(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && refused(new_size, new_size - old) {
            report_refusal(new_size);
            return std::ptr::null_mut();
        }
        // SAFETY: same contract as ours.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= old {
                count_alloc(new_size - old);
            } else {
                LIVE.fetch_sub(old - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}
