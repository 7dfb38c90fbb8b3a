//! A global allocator that keeps freed large blocks for reuse, so that a busy server's resident
//! memory levels off at once instead of creeping up for minutes.
//!
//! Why: each request allocates a few dozen buffers between 128 KiB and a few MiB (the upload,
//! decoded audio, spectra, network activations whose size follows the batch). glibc serves
//! them from its heaps once its dynamic mmap threshold has risen past them, and their changing
//! sizes fragment those heaps: in the soak test the server's resident set climbed for about
//! seven minutes and levelled off some 20 % above the second minute's, while the bytes malloc
//! had handed out stayed flat. Mapping each large block afresh (a fixed mmap threshold) keeps
//! memory flat but cost about 30 % throughput, in page faults on memory that was just given
//! back. This allocator takes the good half of each:
//!
//! - Requests of [`MIN_LARGE`] bytes and more get a mapping of their own, its length rounded up
//!   to one of four sizes per power of two, with one page in front that records the length.
//! - A freed block is kept on a free list, and a later request reuses the smallest kept block
//!   that fits it, if that block is at most twice its size: pages already resident, so no
//!   system call and no page fault, and no fragmentation, since blocks are never split or
//!   merged.
//! - At most a set number of bytes are kept ([`LargeBlockCache::set_cap`]); a block freed beyond
//!   that is unmapped. [`LargeBlockCache::release_idle`], called periodically, unmaps as many
//!   bytes (oldest blocks first) as were kept unused throughout the period since its previous
//!   call: the low-water mark of the kept bytes. What stays is what the load's swings actually
//!   need, so a burst (the start-up warm-up, one long upload) or a drop in load is given back
//!   within two periods.
//! - Blocks above [`MAX_CACHED`] (model weights, training tensors) are mapped and unmapped each
//!   time: they are rare and keeping one would hold too much.
//!
//! Everything smaller goes to the system allocator unchanged. Off Unix the whole type is the
//! system allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Smallest request served by this allocator's own blocks (glibc's default mmap threshold).
pub const MIN_LARGE: usize = 128 << 10;
/// Largest block kept for reuse; blocks for larger requests are unmapped when freed.
pub const MAX_CACHED: usize = 64 << 20;
/// Cap [`LargeBlockCache::new`] is given by the binary, before it applies its flag.
pub const DEFAULT_CAP_BYTES: usize = 128 << 20;

/// Alignment of every block's start, and the size of the header in front of it: one page on
/// every Linux target, so alignments up to a page are served.
const PAGE: usize = 4096;
/// Free blocks kept at most, whatever their size (the free list is a fixed array, because the
/// allocator cannot allocate for itself).
const SLOTS: usize = 512;
/// log2 of the mapping lengths per power of two.
const STEP_SHIFT: u32 = 2;

/// Mapping length for a block of `need` bytes (header included): whole pages, rounded up to one
/// of four lengths per power of two, so that a block fits the next slightly larger request too.
fn mapping_len(need: usize) -> usize {
    let pages = need.div_ceil(PAGE) * PAGE;
    if pages > MAX_CACHED {
        return pages;
    }
    let log2 = usize::BITS - 1 - pages.leading_zeros();
    let step = (1usize << log2.saturating_sub(STEP_SHIFT)).max(PAGE);
    pages.div_ceil(step) * step
}

/// Whether a layout is served by this allocator's own blocks.
fn is_large(layout: &Layout) -> bool {
    cfg!(unix) && layout.size() >= MIN_LARGE && layout.align() <= PAGE
}

/// Whether a kept block of `len` bytes may serve a request needing `need` (header included):
/// it must fit, and be at most twice as large. A block stays resident up to the largest
/// request it served, so a looser fit keeps more memory for the same load and a tighter one
/// maps more blocks (the network's activations change size with every batch).
fn fits(len: usize, need: usize) -> bool {
    need <= len && len <= need.saturating_mul(2)
}

/// A kept block: its mapping, and when it was freed (a sequence number: lower is older).
#[derive(Clone, Copy)]
struct Slot {
    base: *mut u8,
    len: usize,
    freed: u64,
}

const EMPTY_SLOT: Slot = Slot {
    base: std::ptr::null_mut(),
    len: 0,
    freed: 0,
};

/// The kept blocks (unordered) and their accounting.
struct FreeList {
    slots: [Slot; SLOTS],
    count: usize,
    /// Bytes of the kept blocks.
    kept: usize,
    /// Fewest bytes kept at any moment since the last release: that much was never needed.
    low_water: usize,
    /// Next `Slot::freed`.
    next_seq: u64,
}

// SAFETY: the raw pointers are blocks owned by the list, reachable only under its mutex.
unsafe impl Send for FreeList {}

impl FreeList {
    /// Removes and returns the smallest block that [`fits`] `need`.
    fn take_best(&mut self, need: usize) -> Option<Slot> {
        let live = &self.slots[..self.count];
        let (index, _) = live
            .iter()
            .enumerate()
            .filter(|(_, s)| fits(s.len, need))
            .min_by_key(|(_, s)| s.len)?;
        let slot = self.remove(index);
        self.low_water = self.low_water.min(self.kept);
        Some(slot)
    }

    /// Keeps a block, if there is a slot for it and the cap allows.
    fn keep(&mut self, base: *mut u8, len: usize, cap: usize) -> bool {
        if self.count == SLOTS || self.kept + len > cap {
            return false;
        }
        self.slots[self.count] = Slot {
            base,
            len,
            freed: self.next_seq,
        };
        self.next_seq += 1;
        self.count += 1;
        self.kept += len;
        true
    }

    /// Removes a slot in O(1), moving the last one into its place.
    fn remove(&mut self, index: usize) -> Slot {
        let slot = self.slots[index];
        self.count -= 1;
        self.kept -= slot.len;
        self.slots[index] = self.slots[self.count];
        slot
    }

    /// Removes a slot keeping the others in order (for the release's oldest-first walk).
    fn remove_ordered(&mut self, index: usize) -> Slot {
        let slot = self.slots[index];
        self.slots.copy_within(index + 1..self.count, index);
        self.count -= 1;
        self.kept -= slot.len;
        slot
    }
}

/// Counters of what the cache did since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Bytes of kept blocks now (resident, ready for reuse).
    pub kept_bytes: usize,
    /// Large requests served with a kept block.
    pub reused: usize,
    /// Blocks mapped from the kernel.
    pub mapped: usize,
    /// Bytes mapped now: blocks in use and kept.
    pub mapped_bytes: usize,
    /// Blocks unmapped: freed over the cap, idle, or above [`MAX_CACHED`].
    pub unmapped: usize,
}

/// The cache [`LargeBlockCache::publish`] named: the process's global allocator, if it is one.
static PUBLISHED: OnceLock<&'static LargeBlockCache> = OnceLock::new();

/// The process's global allocator, when the binary installed a [`LargeBlockCache`] and
/// published it; the library's metrics read it through this without knowing the binary.
pub fn published() -> Option<&'static LargeBlockCache> {
    PUBLISHED.get().copied()
}

/// The allocator; see the module documentation. `const`, so it can be the global allocator.
pub struct LargeBlockCache {
    free: Mutex<FreeList>,
    cap_bytes: AtomicUsize,
    reused: AtomicUsize,
    mapped: AtomicUsize,
    mapped_bytes: AtomicUsize,
    unmapped: AtomicUsize,
}

impl LargeBlockCache {
    /// An empty cache that keeps at most `cap_bytes` of freed blocks.
    pub const fn new(cap_bytes: usize) -> Self {
        LargeBlockCache {
            free: Mutex::new(FreeList {
                slots: [EMPTY_SLOT; SLOTS],
                count: 0,
                kept: 0,
                low_water: 0,
                next_seq: 0,
            }),
            cap_bytes: AtomicUsize::new(cap_bytes),
            reused: AtomicUsize::new(0),
            mapped: AtomicUsize::new(0),
            mapped_bytes: AtomicUsize::new(0),
            unmapped: AtomicUsize::new(0),
        }
    }

    /// Makes this cache the one [`published`] returns (the first call wins).
    pub fn publish(&'static self) {
        let _ = PUBLISHED.set(self);
    }

    /// Sets how many bytes of freed blocks may be kept; 0 unmaps every block when it is freed.
    /// Blocks already kept over a lowered cap go at the next [`Self::release_idle`].
    pub fn set_cap(&self, bytes: usize) {
        self.cap_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The cap set by [`Self::new`] or [`Self::set_cap`].
    pub fn cap(&self) -> usize {
        self.cap_bytes.load(Ordering::Relaxed)
    }

    /// What the cache holds and has done.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            kept_bytes: self.lock().kept,
            reused: self.reused.load(Ordering::Relaxed),
            mapped: self.mapped.load(Ordering::Relaxed),
            mapped_bytes: self.mapped_bytes.load(Ordering::Relaxed),
            unmapped: self.unmapped.load(Ordering::Relaxed),
        }
    }

    /// Ends a period: unmaps up to as many bytes as stayed kept and unused throughout it (the
    /// low-water mark since the previous call), oldest blocks first, then the largest blocks
    /// while more than the cap is kept. Returns the bytes released.
    pub fn release_idle(&self) -> usize {
        self.release(false)
    }

    /// Unmaps every kept block. Returns the bytes released.
    pub fn release_all(&self) -> usize {
        self.release(true)
    }

    fn release(&self, all: bool) -> usize {
        let mut out = [EMPTY_SLOT; SLOTS];
        let mut n = 0;
        {
            let mut list = self.lock();
            let mut surplus = if all { usize::MAX } else { list.low_water };
            let count = list.count;
            list.slots[..count].sort_unstable_by_key(|s| s.freed);
            // Oldest first; a block larger than what is left of the surplus stays.
            let mut i = 0;
            while i < list.count {
                let len = list.slots[i].len;
                if len <= surplus {
                    surplus -= len;
                    out[n] = list.remove_ordered(i);
                    n += 1;
                } else {
                    i += 1;
                }
            }
            while list.kept > self.cap() && list.count > 0 {
                let Some((largest, _)) = list.slots[..list.count]
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, s)| s.len)
                else {
                    break;
                };
                out[n] = list.remove_ordered(largest);
                n += 1;
            }
            list.low_water = list.kept;
        }
        // Unmapped outside the lock, so that the system calls never hold up an allocation.
        let mut released = 0;
        for slot in &out[..n] {
            // SAFETY: the slot left the free list, so its block is mapped and unused.
            unsafe { self.unmap(slot.base, slot.len) };
            released += slot.len;
        }
        released
    }

    fn lock(&self) -> MutexGuard<'_, FreeList> {
        // The lock never guards a panic (the list's code cannot panic), so poisoning is moot.
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A block for `size >= MIN_LARGE` bytes, and whether it is fresh from the kernel (and so
    /// already zeroed). Null when the kernel refuses.
    fn take(&self, size: usize) -> (*mut u8, bool) {
        let Some(need) = size.checked_add(PAGE) else {
            return (std::ptr::null_mut(), true);
        };
        if need <= MAX_CACHED {
            let kept = self.lock().take_best(need);
            if let Some(slot) = kept {
                self.reused.fetch_add(1, Ordering::Relaxed);
                // SAFETY: the block is `slot.len > PAGE` bytes; its header is still written.
                return (unsafe { slot.base.add(PAGE) }, false);
            }
        }
        let len = mapping_len(need);
        let base = self.map(len);
        if base.is_null() {
            return (base, true);
        }
        // SAFETY: a fresh mapping of `len >= PAGE` bytes, page-aligned; the header is its
        // first word and the caller's bytes start a page later.
        unsafe {
            base.cast::<usize>().write(len);
            (base.add(PAGE), true)
        }
    }

    /// Keeps or unmaps a block that [`Self::take`] returned.
    ///
    /// # Safety
    /// `ptr` came from `take` and is no longer used.
    unsafe fn give(&self, ptr: *mut u8) {
        // SAFETY: `take` wrote the mapping's length one page before the pointer it returned.
        let (base, len) = unsafe {
            let base = ptr.sub(PAGE);
            (base, base.cast::<usize>().read())
        };
        if len <= MAX_CACHED && self.lock().keep(base, len, self.cap()) {
            return;
        }
        // SAFETY: the whole mapping, no longer used.
        unsafe { self.unmap(base, len) };
    }

    /// Usable bytes of the block at `ptr` (from [`Self::take`]).
    ///
    /// # Safety
    /// `ptr` came from `take` and has not been given back.
    unsafe fn capacity(ptr: *mut u8) -> usize {
        // SAFETY: as in `give`.
        unsafe { ptr.sub(PAGE).cast::<usize>().read() - PAGE }
    }

    #[cfg(unix)]
    fn map(&self, len: usize) -> *mut u8 {
        // SAFETY: an anonymous private mapping touches no existing memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return std::ptr::null_mut();
        }
        self.mapped.fetch_add(1, Ordering::Relaxed);
        self.mapped_bytes.fetch_add(len, Ordering::Relaxed);
        p.cast()
    }

    #[cfg(unix)]
    unsafe fn unmap(&self, base: *mut u8, len: usize) {
        // SAFETY: the caller passes a whole mapping made by `map`. munmap of a valid mapping
        // cannot fail; if it did, the mapping would only leak.
        unsafe { libc::munmap(base.cast(), len) };
        self.unmapped.fetch_add(1, Ordering::Relaxed);
        self.mapped_bytes.fetch_sub(len, Ordering::Relaxed);
    }

    #[cfg(not(unix))]
    fn map(&self, _len: usize) -> *mut u8 {
        unreachable!("large blocks are only used on Unix")
    }

    #[cfg(not(unix))]
    unsafe fn unmap(&self, _base: *mut u8, _len: usize) {
        unreachable!("large blocks are only used on Unix")
    }
}

// SAFETY: large layouts get a block of at least their size, page-aligned (which covers their
// alignment, checked by `is_large`), used by nobody else until `dealloc` with the same layout
// hands it back; everything else is the system allocator's.
unsafe impl GlobalAlloc for LargeBlockCache {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            self.take(layout.size()).0
        } else {
            // SAFETY: forwarded as received.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            let (block, fresh) = self.take(layout.size());
            if !block.is_null() && !fresh {
                // SAFETY: a reused block of at least `layout.size()` bytes, ours to clear.
                unsafe { block.write_bytes(0, layout.size()) };
            }
            block
        } else {
            // SAFETY: forwarded as received.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_large(&layout) {
            // SAFETY: `alloc` with this layout made the block.
            unsafe { self.give(ptr) }
        } else {
            // SAFETY: forwarded as received.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: GlobalAlloc::realloc's contract: new_size is non-zero and, rounded up to the
        // alignment, does not overflow isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (is_large(&layout), is_large(&new_layout)) {
            // SAFETY: forwarded as received.
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            // SAFETY: a live block of ours.
            (true, true) if fits(unsafe { Self::capacity(ptr) }, new_size) => ptr,
            _ => {
                // SAFETY: a new block from this allocator; the old one is valid for
                // `layout.size()` bytes and handed back with its own layout.
                unsafe {
                    let new = self.alloc(new_layout);
                    if !new.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    new
                }
            }
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 8).expect("valid layout")
    }

    /// Allocates `size` bytes filled with `tag`.
    fn filled(cache: &LargeBlockCache, size: usize, tag: u8) -> *mut u8 {
        unsafe {
            let p = cache.alloc(layout(size));
            assert!(!p.is_null());
            p.write_bytes(tag, size);
            p
        }
    }

    #[test]
    fn mappings_round_up_by_at_most_a_quarter_to_whole_pages() {
        assert_eq!(mapping_len(MIN_LARGE + PAGE), 160 * KIB);
        assert_eq!(mapping_len(256 * KIB), 256 * KIB);
        assert_eq!(mapping_len(256 * KIB + 1), 320 * KIB);
        assert_eq!(mapping_len(MAX_CACHED + 1), MAX_CACHED + PAGE);
        let mut need = PAGE;
        while need < 4 * MAX_CACHED {
            let len = mapping_len(need);
            assert!(len >= need && len.is_multiple_of(PAGE), "{need}");
            assert!(
                len as f64 <= need as f64 * 1.25 + PAGE as f64,
                "{need} → {len}"
            );
            need += need / 7 + 1;
        }
    }

    #[test]
    fn a_freed_block_serves_the_next_request_it_fits() {
        let cache = LargeBlockCache::new(DEFAULT_CAP_BYTES);
        unsafe {
            let a = filled(&cache, 200 * KIB, 7);
            cache.dealloc(a, layout(200 * KIB));
            assert_eq!(cache.stats().kept_bytes, mapping_len(204 * KIB));
            let b = cache.alloc(layout(150 * KIB));
            assert_eq!(a, b, "a 224 KiB block serves 150 KiB");
            // Too big for it: a new mapping.
            let c = cache.alloc(layout(300 * KIB));
            assert_ne!(c, b);
            cache.dealloc(b, layout(150 * KIB));
            cache.dealloc(c, layout(300 * KIB));
        }
        let stats = cache.stats();
        assert_eq!((stats.mapped, stats.reused, stats.unmapped), (2, 1, 0));
        assert_eq!(
            cache.release_all(),
            mapping_len(204 * KIB) + mapping_len(304 * KIB)
        );
        assert_eq!(cache.stats().kept_bytes, 0);
    }

    #[test]
    fn the_smallest_fitting_block_is_taken_and_none_half_again_too_big() {
        let cache = LargeBlockCache::new(DEFAULT_CAP_BYTES);
        unsafe {
            let sizes = [4 * MIB, 300 * KIB, 600 * KIB, 700 * KIB, 1200 * KIB];
            let blocks: Vec<_> = sizes.iter().map(|&s| filled(&cache, s, 1)).collect();
            for (&p, &s) in blocks.iter().zip(&sizes) {
                cache.dealloc(p, layout(s));
            }
            // 520 KiB: the 600 KiB block (640 KiB mapped; the 700 KiB one fits too, but is
            // larger; the 300 KiB one is too small).
            let p = cache.alloc(layout(520 * KIB));
            assert_eq!(p, blocks[2]);
            // 1 MiB: the 1.2 MiB block; the 4 MiB one is over half as large again.
            let q = cache.alloc(layout(MIB));
            assert_eq!(q, blocks[4]);
            let r = cache.alloc(layout(MIB));
            assert!(!blocks.contains(&r), "a 4 MiB block does not serve 1 MiB");
            for (ptr, s) in [(p, 520 * KIB), (q, MIB), (r, MIB)] {
                cache.dealloc(ptr, layout(s));
            }
        }
        cache.release_all();
    }

    #[test]
    fn zeroed_requests_are_zero_even_on_a_reused_block() {
        let cache = LargeBlockCache::new(DEFAULT_CAP_BYTES);
        unsafe {
            let a = filled(&cache, MIN_LARGE, 0xAB);
            cache.dealloc(a, layout(MIN_LARGE));
            let b = cache.alloc_zeroed(layout(MIN_LARGE));
            assert_eq!(a, b);
            assert!(std::slice::from_raw_parts(b, MIN_LARGE)
                .iter()
                .all(|&x| x == 0));
            cache.dealloc(b, layout(MIN_LARGE));
        }
        cache.release_all();
    }

    #[test]
    fn blocks_freed_over_the_cap_and_huge_blocks_are_unmapped() {
        let len = mapping_len(MIN_LARGE + PAGE);
        let cache = LargeBlockCache::new(2 * len);
        unsafe {
            let blocks: Vec<_> = (0..3).map(|_| filled(&cache, MIN_LARGE, 2)).collect();
            for b in blocks {
                cache.dealloc(b, layout(MIN_LARGE));
            }
            assert_eq!(cache.stats().kept_bytes, 2 * len);
            assert_eq!(cache.stats().unmapped, 1);
            let huge = filled(&cache, MAX_CACHED, 3);
            cache.dealloc(huge, layout(MAX_CACHED));
        }
        assert_eq!(cache.stats().unmapped, 2);
        assert_eq!(cache.stats().kept_bytes, 2 * len);
        // A cap of zero keeps nothing; lowering it gives back what is over it.
        cache.set_cap(0);
        assert_eq!(cache.release_idle(), 2 * len);
        unsafe {
            let a = filled(&cache, MIN_LARGE, 4);
            cache.dealloc(a, layout(MIN_LARGE));
        }
        assert_eq!(cache.stats().kept_bytes, 0);
    }

    #[test]
    fn a_full_free_list_unmaps_what_it_cannot_hold() {
        let cache = LargeBlockCache::new(usize::MAX);
        unsafe {
            let blocks: Vec<_> = (0..SLOTS + 1)
                .map(|_| cache.alloc(layout(MIN_LARGE)))
                .collect();
            for b in blocks {
                assert!(!b.is_null());
                cache.dealloc(b, layout(MIN_LARGE));
            }
        }
        assert_eq!(cache.stats().unmapped, 1);
        assert_eq!(cache.release_all(), SLOTS * mapping_len(MIN_LARGE + PAGE));
    }

    #[test]
    fn release_idle_gives_back_what_went_unused_for_a_whole_period() {
        let cache = LargeBlockCache::new(DEFAULT_CAP_BYTES);
        let (l, len) = (layout(MIN_LARGE), mapping_len(MIN_LARGE + PAGE));
        unsafe {
            let (a, b) = (cache.alloc(l), cache.alloc(l));
            cache.dealloc(a, l);
            cache.dealloc(b, l);
        }
        // Freed during this period: not unused for a whole one yet.
        assert_eq!(cache.release_idle(), 0);
        // One of the two is used and freed again during the next period.
        unsafe {
            let a = cache.alloc(l);
            cache.dealloc(a, l);
        }
        assert_eq!(cache.release_idle(), len);
        assert_eq!(cache.stats().kept_bytes, len);
        assert_eq!(cache.release_idle(), len);
        assert_eq!(cache.stats().kept_bytes, 0);
    }

    /// A burst (the warm-up's full batch) leaves a big block behind that the steady, smaller
    /// requests never use: the low-water mark sees it unused and it goes; their block stays.
    #[test]
    fn a_burst_is_given_back_while_the_steady_working_set_stays() {
        let cache = LargeBlockCache::new(DEFAULT_CAP_BYTES);
        let (big, small) = (8 * MIB, 300 * KIB);
        unsafe {
            let burst = filled(&cache, big, 1);
            let p = filled(&cache, small, 1);
            cache.dealloc(burst, layout(big));
            cache.dealloc(p, layout(small));
            cache.release_idle();
            for _ in 0..2 {
                for _ in 0..10 {
                    let p = filled(&cache, small, 2);
                    cache.dealloc(p, layout(small));
                }
                cache.release_idle();
            }
        }
        assert_eq!(cache.stats().kept_bytes, mapping_len(small + PAGE));
        assert_eq!(cache.stats().mapped, 2);
        cache.release_all();
    }

    #[test]
    fn realloc_keeps_contents_across_sizes_and_the_small_boundary() {
        let cache = LargeBlockCache::new(DEFAULT_CAP_BYTES);
        unsafe {
            let mut size = 1000;
            let mut p = cache.alloc(layout(size));
            for i in 0..size {
                p.add(i).write(i as u8);
            }
            for next in [150 * KIB, 151 * KIB, 3 * MIB, MAX_CACHED + 5, 400 * KIB, 64] {
                let q = cache.realloc(p, layout(size), next);
                assert!(!q.is_null());
                let kept = size.min(next);
                assert!(
                    (0..kept).all(|i| *q.add(i) == i as u8),
                    "contents lost going {size} → {next}"
                );
                for i in kept..next {
                    q.add(i).write(i as u8);
                }
                if next == 151 * KIB {
                    assert_eq!(q, p, "150 → 151 KiB stays in its block");
                }
                (p, size) = (q, next);
            }
            cache.dealloc(p, layout(size));
        }
        cache.release_all();
    }

    #[test]
    fn page_alignment_is_honoured_and_stricter_goes_to_the_system() {
        let cache = LargeBlockCache::new(DEFAULT_CAP_BYTES);
        unsafe {
            for align in [64, 4096, 16384] {
                let l = Layout::from_size_align(MIN_LARGE, align).expect("valid layout");
                let p = cache.alloc(l);
                assert_eq!(p as usize % align, 0);
                p.write_bytes(1, MIN_LARGE);
                cache.dealloc(p, l);
            }
        }
        assert_eq!(
            cache.stats().mapped,
            1,
            "16 KiB alignment is the system's job"
        );
        cache.release_all();
    }

    #[test]
    fn many_threads_never_share_a_block() {
        let cache = LargeBlockCache::new(8 * MIB);
        std::thread::scope(|s| {
            for t in 0..8usize {
                let cache = &cache;
                s.spawn(move || {
                    let mut seed = t as u64 * 7919 + 1;
                    for _ in 0..300 {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                        let size = MIN_LARGE + (seed >> 33) as usize % (2 * MIB);
                        let tag = (seed >> 20) as u8;
                        unsafe {
                            let p = filled(cache, size, tag);
                            std::thread::yield_now();
                            let s = std::slice::from_raw_parts(p, size);
                            assert!(s.iter().all(|&x| x == tag), "a block was shared");
                            cache.dealloc(p, layout(size));
                        }
                    }
                });
            }
        });
        let stats = cache.stats();
        assert!(stats.kept_bytes <= 8 * MIB);
        assert!(stats.reused > 0);
        cache.release_all();
        let stats = cache.stats();
        assert_eq!(stats.kept_bytes, 0);
        assert_eq!(
            stats.mapped, stats.unmapped,
            "every mapped block was unmapped"
        );
    }

    /// Minor page faults of this thread so far.
    fn minor_faults() -> i64 {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage fills the struct it is given.
        unsafe {
            assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()), 0);
            usage.assume_init().ru_minflt
        }
    }

    /// The point of the cache: a request that reuses a block touches resident pages. With no
    /// cache, every 4 MiB request faults its pages in again.
    #[test]
    fn reused_blocks_do_not_fault_pages_in_again() {
        let faults = |cap: usize| {
            let cache = LargeBlockCache::new(cap);
            let before = minor_faults();
            for _ in 0..20 {
                unsafe {
                    let p = filled(&cache, 4 * MIB, 3);
                    cache.dealloc(p, layout(4 * MIB));
                }
            }
            let n = minor_faults() - before;
            cache.release_all();
            n
        };
        let (cached, uncached) = (faults(DEFAULT_CAP_BYTES), faults(0));
        // Only the first request faults with the cache (1 025 pages, or a few huge pages where
        // transparent huge pages are on); without it all 20 do.
        assert!(
            uncached >= 20 && uncached > 10 * cached,
            "{cached} faults with the cache, {uncached} without"
        );
    }
}
