//! Caps glibc's malloc arenas before the first worker thread starts.
//!
//! glibc gives each new thread its own arena, up to eight per core, and keeps the pages freed into
//! an arena for that arena's next caller instead of returning them to the kernel. A server whose
//! requests hop between tokio workers and blocking threads (decode, features, the batcher) spreads
//! its short-lived buffers over all of those arenas, so resident memory crept up for tens of
//! minutes (past 110 MiB in a 30-minute soak). Two arenas removed most of that climb (peaks of
//! 67–78 MiB) at the same throughput; jemalloc did too, but served about 30 % fewer requests.
//! The measurements are in the README's "Security and limits".
//!
//! The cap is process-wide and only takes full effect if it is set before other threads allocate,
//! which is why `main` calls [`cap_arenas`] before anything else runs.
//!
//! The rest of the climb was not a leak: a later heaptrack run reported a growing live heap, but
//! glibc's own `malloc_stats` on the same load showed the bytes in use flat (4.11 → 4.18 MB over
//! 17 000 requests) while the arenas' free pages stayed resident. [`start_trimmer`] returns those
//! pages every few seconds (`serve --malloc-trim-seconds`). That lowered the floor but not the
//! peak: the arenas still grew through fragmentation to a plateau about 20 % above the second
//! minute of a soak. The cause was the large buffers (128 KiB and up), whose sizes change from
//! request to request; they now bypass the arenas ([`auralguard::large_blocks`]), which are left
//! with small objects only.

/// What [`cap_arenas`] did, for the startup log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArenaCap {
    /// At most this many arenas.
    Capped(u32),
    /// `MALLOC_ARENA_MAX` was set in the environment; glibc applied it itself and it wins.
    FromEnvironment(String),
    /// `--malloc-arenas 0`: glibc's own limit (eight per core).
    GlibcDefault,
    /// Not a glibc target (musl, macOS): the flag has no effect there.
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    Unsupported,
    /// glibc refused the value.
    Refused(u32),
}

impl std::fmt::Display for ArenaCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Capped(n) => write!(f, "malloc arenas capped at {n}"),
            Self::FromEnvironment(v) => {
                write!(f, "malloc arenas: MALLOC_ARENA_MAX={v} (environment)")
            }
            Self::GlibcDefault => f.write_str("malloc arenas: glibc default (8 per core)"),
            #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
            Self::Unsupported => f.write_str("malloc arenas: not glibc, --malloc-arenas ignored"),
            Self::Refused(n) => write!(f, "malloc arenas: glibc refused a cap of {n}"),
        }
    }
}

/// Limits glibc to `max` malloc arenas (0 keeps glibc's default). An explicit
/// `MALLOC_ARENA_MAX` in the environment is left alone: an operator who set it meant it.
pub fn cap_arenas(max: u32) -> ArenaCap {
    if let Some(value) = std::env::var_os("MALLOC_ARENA_MAX") {
        return ArenaCap::FromEnvironment(value.to_string_lossy().into_owned());
    }
    if max == 0 {
        return ArenaCap::GlibcDefault;
    }
    set_arena_max(max)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_arena_max(max: u32) -> ArenaCap {
    let Ok(value) = libc::c_int::try_from(max) else {
        return ArenaCap::Refused(max);
    };
    // SAFETY: mallopt only updates malloc's tunables under its own lock; any value is accepted
    // or refused with 0.
    let accepted = unsafe { libc::mallopt(libc::M_ARENA_MAX, value) };
    if accepted == 1 {
        ArenaCap::Capped(max)
    } else {
        ArenaCap::Refused(max)
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_max: u32) -> ArenaCap {
    ArenaCap::Unsupported
}

/// Hands the pages freed into malloc's arenas back to the kernel every `every`, on a thread of
/// its own, for as long as the process runs. Returns false where there is no glibc
/// `malloc_trim` (nothing is started) or the thread could not start.
///
/// Why: glibc returns memory to the kernel only from the top of an arena, so small buffers
/// freed in the middle of its heaps stay resident, and which ones depends on timing.
/// `malloc_trim` releases every free page, not only the top, with `madvise`; at every 5 s it
/// cost no measurable throughput.
pub fn start_trimmer(every: std::time::Duration) -> bool {
    cfg!(all(target_os = "linux", target_env = "gnu"))
        && every_period("auralguard-trim", every, || {
            trim_now();
        })
}

/// Every `period`, on a thread of its own, returns to the kernel the large blocks the global
/// allocator kept but that went unused for the whole period
/// ([`auralguard::large_blocks::LargeBlockCache::release_idle`]). Returns false if the thread
/// could not start.
pub fn start_block_releaser(period: std::time::Duration) -> bool {
    every_period("auralguard-blocks", period, || {
        crate::ALLOCATOR.release_idle();
    })
}

/// Runs `task` every `period` on a thread named `name`, for as long as the process runs; false
/// if the thread could not start.
fn every_period(name: &str, period: std::time::Duration, task: fn()) -> bool {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || loop {
            std::thread::sleep(period);
            task();
        })
        .is_ok()
}

/// Returns free malloc pages to the kernel now; true when glibc released any.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim_now() -> bool {
    // SAFETY: malloc_trim takes each arena's own lock; it is safe to call from any thread at
    // any time.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Returns free malloc pages to the kernel now (not glibc: nothing to do).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim_now() -> bool {
    false
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;
    use std::process::Command;

    /// Set in the child process that runs [`child_allocates_from_many_threads`] for real.
    const CHILD_ENV: &str = "AURALGUARD_TEST_ARENA_CHILD";

    /// Number of arenas glibc has, from `malloc_info`'s `<heap nr=…>` elements.
    fn arena_count() -> usize {
        let mut buf: *mut libc::c_char = std::ptr::null_mut();
        let mut len: libc::size_t = 0;
        // SAFETY: open_memstream allocates `buf` and keeps it and `len` updated until fclose;
        // the buffer is read after fclose and freed with free(), as its manual requires.
        unsafe {
            let stream = libc::open_memstream(&mut buf, &mut len);
            assert!(!stream.is_null(), "open_memstream failed");
            assert_eq!(libc::malloc_info(0, stream), 0, "malloc_info failed");
            libc::fclose(stream);
            let bytes = std::slice::from_raw_parts(buf.cast::<u8>(), len);
            let xml = String::from_utf8_lossy(bytes).into_owned();
            libc::free(buf.cast());
            xml.matches("<heap nr=").count()
        }
    }

    /// Runs in a child process (arena state is process-wide and the harness's own threads have
    /// already allocated): applies the cap named in the environment, then allocates from eight
    /// threads at once, and prints how many arenas glibc ended up with.
    #[test]
    fn child_allocates_from_many_threads() {
        let Ok(cap) = std::env::var(CHILD_ENV) else {
            return; // only meaningful when spawned by the tests below
        };
        let cap: u32 = cap.parse().expect("cap");
        let outcome = cap_arenas(cap);
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    let blocks: Vec<Vec<u8>> = (0..64).map(|j| vec![i as u8; 1000 + j]).collect();
                    barrier.wait();
                    blocks.len()
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        // On a line of its own: the harness prints the test's name just before.
        println!("\nARENAS={} OUTCOME={outcome}", arena_count());
    }

    /// Runs the test `name` of this module alone in a fresh process with `flag` set in its
    /// environment and `MALLOC_ARENA_MAX` as given; returns its stdout (it must succeed).
    fn run_child(name: &str, flag: (&str, &str), malloc_arena_max: Option<&str>) -> String {
        let exe = std::env::current_exe().expect("test binary");
        let mut child = Command::new(exe);
        child
            .args(["--exact", &format!("cli::malloc::tests::{name}")])
            .args(["--nocapture", "--test-threads", "1"])
            .env(flag.0, flag.1);
        match malloc_arena_max {
            Some(v) => child.env("MALLOC_ARENA_MAX", v),
            None => child.env_remove("MALLOC_ARENA_MAX"),
        };
        let out = child.output().expect("spawn test binary");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "child failed: {stdout}");
        stdout
    }

    /// Runs [`child_allocates_from_many_threads`] in a fresh process with `--malloc-arenas cap`
    /// and `MALLOC_ARENA_MAX` as given; returns its arena count and the decision it logged.
    fn arenas_in_child(cap: u32, malloc_arena_max: Option<&str>) -> (usize, String) {
        let stdout = run_child(
            "child_allocates_from_many_threads",
            (CHILD_ENV, &cap.to_string()),
            malloc_arena_max,
        );
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("ARENAS=").map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("no ARENAS line in {stdout}"));
        let (count, outcome) = line.split_once(" OUTCOME=").expect("outcome");
        (count.parse().expect("count"), outcome.to_string())
    }

    #[test]
    fn cap_limits_the_arenas_that_threads_create() {
        let (capped, outcome) = arenas_in_child(2, None);
        assert_eq!(outcome, "malloc arenas capped at 2");
        assert!(capped <= 2, "{capped} arenas with a cap of 2");
        // The same workload without the cap spreads over more arenas, so the check above can
        // fail: the cap is what makes the difference.
        let (uncapped, outcome) = arenas_in_child(0, None);
        assert_eq!(outcome, "malloc arenas: glibc default (8 per core)");
        assert!(uncapped > 2, "only {uncapped} arenas without a cap");
    }

    /// Set in the child process that runs [`child_trims_a_pinned_heap`] for real.
    const TRIM_CHILD_ENV: &str = "AURALGUARD_TEST_TRIM_CHILD";

    /// This process's resident memory, from `/proc/self/statm`.
    fn rss_bytes() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .expect("resident pages");
        // SAFETY: sysconf has no preconditions.
        pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
    }

    /// Runs in a child process: fills 40 MiB of arena memory in 16 KiB blocks (below the mmap
    /// threshold), frees all but the newest block, which pins the arena's top so that `free`
    /// cannot give anything back, and prints the resident memory before and after a pause and
    /// after [`trim_now`].
    #[test]
    fn child_trims_a_pinned_heap() {
        if std::env::var_os(TRIM_CHILD_ENV).is_none() {
            return; // only meaningful when spawned by the test below
        }
        let mut blocks: Vec<Vec<u8>> = (0..2560)
            .map(|i| vec![(i % 251) as u8 + 1; 16 * 1024])
            .collect();
        let pin = blocks.pop();
        drop(blocks);
        let freed = rss_bytes();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let later = rss_bytes();
        let released = trim_now();
        let trimmed = rss_bytes();
        println!("\nTRIM freed={freed} later={later} trimmed={trimmed} released={released}");
        drop(pin);
    }

    #[test]
    fn trimming_returns_freed_pages_that_free_alone_keeps() {
        let stdout = run_child("child_trims_a_pinned_heap", (TRIM_CHILD_ENV, "1"), None);
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("TRIM "))
            .unwrap_or_else(|| panic!("no TRIM line in {stdout}"));
        let field = |name: &str| -> String {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_string))
                .unwrap_or_else(|| panic!("no {name} in {line}"))
        };
        let mib = |name: &str| field(name).parse::<u64>().expect(name) as f64 / (1 << 20) as f64;
        let (freed, later, trimmed) = (mib("freed"), mib("later"), mib("trimmed"));
        // Without a trim the freed 40 MiB stay resident...
        assert!(
            later > freed - 8.0,
            "{line}: pages went back without a trim"
        );
        // ...and the trim gives (nearly) all of them back.
        assert_eq!(field("released"), "true", "{line}");
        assert!(
            trimmed < later - 30.0,
            "{line}: the trim released too little"
        );
    }

    #[test]
    fn environment_setting_wins() {
        let (count, outcome) = arenas_in_child(2, Some("4"));
        assert_eq!(outcome, "malloc arenas: MALLOC_ARENA_MAX=4 (environment)");
        assert!(
            count > 2 && count <= 4,
            "{count} arenas with MALLOC_ARENA_MAX=4"
        );
    }
}
