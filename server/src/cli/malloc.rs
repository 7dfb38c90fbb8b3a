//! Caps glibc's malloc arenas before the first worker thread starts.
//!
//! glibc gives each new thread its own arena, up to eight per core, and keeps the pages freed into
//! an arena for that arena's next caller instead of returning them to the kernel. A server whose
//! requests hop between tokio workers and blocking threads (decode, features, the batcher) spreads
//! its short-lived buffers over all of those arenas, so resident memory crept up for tens of
//! minutes (past 110 MiB in a 30-minute soak). Two arenas removed most of that climb (peaks of
//! 67–78 MiB) at the same throughput; jemalloc did too, but served about 30 % fewer requests. A
//! later heaptrack run also saw the live heap grow, so not all of the climb is the allocator.
//! The measurements are in the README's "Security and limits".
//!
//! The cap is process-wide and only takes full effect if it is set before other threads allocate,
//! which is why `main` calls [`cap_arenas`] before anything else runs.

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

    /// Runs [`child_allocates_from_many_threads`] in a fresh process with `--malloc-arenas cap`
    /// and `MALLOC_ARENA_MAX` as given; returns its arena count and the decision it logged.
    fn arenas_in_child(cap: u32, malloc_arena_max: Option<&str>) -> (usize, String) {
        let exe = std::env::current_exe().expect("test binary");
        let mut child = Command::new(exe);
        child
            .args([
                "--exact",
                "cli::malloc::tests::child_allocates_from_many_threads",
            ])
            .args(["--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, cap.to_string());
        match malloc_arena_max {
            Some(v) => child.env("MALLOC_ARENA_MAX", v),
            None => child.env_remove("MALLOC_ARENA_MAX"),
        };
        let out = child.output().expect("spawn test binary");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "child failed: {stdout}");
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
