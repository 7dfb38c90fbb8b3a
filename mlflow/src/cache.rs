//! A local folder of downloaded model versions, filled atomically.
//!
//! Layout under the cache root:
//!
//! ```text
//! <root>/<name>/<version>/          a complete model folder (only ever created by a rename)
//! <root>/.tmp/<name>@<version>.*    downloads in progress (or left over by a crash)
//! <root>/.locks/<name>@<version>.lock
//! ```
//!
//! [`ModelCache::get_or_fill`] takes an exclusive file lock per (name, version), so concurrent
//! callers, in this process or in others sharing the folder (two detector replicas on one
//! volume), download once: the others wait, then find the finished folder. The download goes into
//! a fresh folder under `.tmp/`, is checked, and is renamed into place in one step, so the final
//! path is either absent or complete, even if the process dies mid-download. Whoever holds the lock
//! removes temporary folders a crashed holder left behind.
//!
//! The cache knows nothing of MLflow: `fetch` passes it a closure that downloads. Names are
//! percent-encoded into single path segments, so no model name can escape the root.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::model_uri::ModelUri;

/// Folder of downloads in progress, under the root.
const TMP_DIR: &str = ".tmp";
/// Folder of lock files, under the root.
const LOCK_DIR: &str = ".locks";
/// The manifest of an AuralGuard model package.
pub const MANIFEST_FILE: &str = "auralguard.json";
/// The weights of an AuralGuard model package.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// A local cache of model versions, keyed by registered model name and version number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCache {
    root: PathBuf,
}

/// A complete model folder in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedModel {
    /// Registered model name.
    pub name: String,
    /// Version number.
    pub version: u64,
    /// The folder holding the model's files.
    pub dir: PathBuf,
    /// True when this call downloaded it; false when it was already there.
    pub downloaded: bool,
}

impl CachedModel {
    /// `models:/NAME/VERSION` of this entry.
    pub fn uri(&self) -> ModelUri {
        ModelUri::version(self.name.clone(), self.version)
    }

    /// True when the folder holds `auralguard.json` and `model.safetensors`, the files of an
    /// AuralGuard model package (their contents are the server's to check).
    pub fn is_auralguard_package(&self) -> bool {
        self.dir.join(MANIFEST_FILE).is_file() && self.dir.join(WEIGHTS_FILE).is_file()
    }
}

impl ModelCache {
    /// A cache rooted at `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ModelCache { root: root.into() }
    }

    /// The cache's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where version `version` of `name` lives once cached.
    pub fn path_for(&self, name: &str, version: u64) -> PathBuf {
        self.root
            .join(encode_segment(name))
            .join(version.to_string())
    }

    /// The cached folder of `name`/`version`, if complete. Needs no lock: a final folder only
    /// appears by rename, whole.
    pub fn get(&self, name: &str, version: u64) -> Option<CachedModel> {
        let dir = self.path_for(name, version);
        dir.is_dir().then(|| CachedModel {
            name: name.to_string(),
            version,
            dir,
            downloaded: false,
        })
    }

    /// The cached folder of `name`/`version`, calling `fill(temp_dir)` to download it first when
    /// missing. `fill` writes the model's files into the empty `temp_dir` it is given; when it
    /// succeeds and left at least one file, the folder is moved into place. On error nothing
    /// appears at the final path and the temporary folder is removed.
    pub async fn get_or_fill<F, Fut>(
        &self,
        name: &str,
        version: u64,
        fill: F,
    ) -> Result<CachedModel>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        if let Some(hit) = self.get(name, version) {
            return Ok(hit);
        }
        let (key, tmp_root, _lock) = self.lock_version(name, version).await?;
        // Someone else may have finished while we waited for the lock.
        if let Some(hit) = self.get(name, version) {
            return Ok(hit);
        }
        remove_stale_temp_dirs(&tmp_root, &key).await?;

        let temp = TempDir::create(&tmp_root, &key).await?;
        fill(temp.path.clone()).await?;
        if !holds_a_file(&temp.path)? {
            return Err(Error::InvalidModel {
                model: ModelUri::version(name, version).to_string(),
                reason: "the download left no files; check that the version's source points at the model folder".into(),
            });
        }

        let final_dir = self.path_for(name, version);
        if let Some(parent) = final_dir.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| Error::io("cannot create cache folder", parent, e))?;
        }
        tokio::fs::rename(&temp.path, &final_dir)
            .await
            .map_err(|e| Error::io("cannot move the download into place at", &final_dir, e))?;
        temp.disarm();
        sync_dir(final_dir.parent());

        let cached = CachedModel {
            name: name.to_string(),
            version,
            dir: final_dir,
            downloaded: true,
        };
        if !cached.is_auralguard_package() {
            tracing::warn!(model = %cached.uri(), dir = %cached.dir.display(),
                "cached model has no {MANIFEST_FILE} + {WEIGHTS_FILE}; it may not be an AuralGuard package");
        }
        Ok(cached)
    }

    /// Removes the cached folder of `name`/`version`, so the next [`get_or_fill`] downloads it
    /// again. For a folder its user found broken (not a package, unreadable weights): without
    /// this, a version fixed in place in the registry would never be fetched again.
    ///
    /// Takes the version's lock and moves the folder into `.tmp/` before deleting it, so a
    /// concurrent reader sees the whole folder or none of it. Returns whether there was one.
    ///
    /// [`get_or_fill`]: ModelCache::get_or_fill
    pub async fn evict(&self, name: &str, version: u64) -> Result<bool> {
        let final_dir = self.path_for(name, version);
        if !final_dir.is_dir() {
            return Ok(false);
        }
        let (key, tmp_root, _lock) = self.lock_version(name, version).await?;
        // The `<key>.` prefix makes a crash between rename and delete a stale download, which
        // the next holder of the lock removes.
        let doomed = tmp_root.join(format!("{key}.evicted.{}", unique_suffix()));
        match tokio::fs::rename(&final_dir, &doomed).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("cannot remove cached model", &final_dir, e)),
        }
        sync_dir(final_dir.parent());
        tokio::fs::remove_dir_all(&doomed)
            .await
            .map_err(|e| Error::io("cannot remove", &doomed, e))?;
        Ok(true)
    }

    /// Takes the exclusive lock of `name`/`version` (creating `.tmp/` and `.locks/` as needed).
    /// Returns the version's key (the prefix of its temporary folders), the `.tmp/` folder and
    /// the lock, held until dropped.
    async fn lock_version(
        &self,
        name: &str,
        version: u64,
    ) -> Result<(String, PathBuf, std::fs::File)> {
        let key = format!("{}@{version}", encode_segment(name));
        let (tmp_root, lock_root) = (self.root.join(TMP_DIR), self.root.join(LOCK_DIR));
        for dir in [&tmp_root, &lock_root] {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| Error::io("cannot create cache folder", dir, e))?;
        }
        let lock = lock_exclusive(lock_root.join(format!("{key}.lock"))).await?;
        Ok((key, tmp_root, lock))
    }
}

/// `<pid>.<nanoseconds>`: unique among this cache's temporary names.
fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}.{nanos}", std::process::id())
}

/// Takes an exclusive lock on `path` (created if needed) on a blocking thread; released when the
/// returned file is dropped, or when the process dies.
async fn lock_exclusive(path: PathBuf) -> Result<std::fs::File> {
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("cannot open lock file", &path, e))?;
        file.lock()
            .map_err(|e| Error::io("cannot lock", &path, e))?;
        Ok(file)
    })
    .await
    .map_err(|e| {
        Error::io(
            "lock task failed for",
            PathBuf::new(),
            std::io::Error::other(e.to_string()),
        )
    })?
}

/// Removes `<tmp_root>/<key>.*`: under the key's lock, any such folder is a crashed download.
async fn remove_stale_temp_dirs(tmp_root: &Path, key: &str) -> Result<()> {
    let prefix = format!("{key}.");
    let mut entries = tokio::fs::read_dir(tmp_root)
        .await
        .map_err(|e| Error::io("cannot list", tmp_root, e))?;
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(|e| Error::io("cannot list", tmp_root, e))?
    {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let path = entry.path();
            tracing::info!(path = %path.display(), "removing an interrupted model download");
            tokio::fs::remove_dir_all(&path)
                .await
                .map_err(|e| Error::io("cannot remove stale download", &path, e))?;
        }
    }
    Ok(())
}

/// A temporary download folder, removed on drop unless disarmed (so errors, panics and
/// cancelled futures leave nothing behind).
struct TempDir {
    path: PathBuf,
    armed: bool,
}

impl TempDir {
    async fn create(tmp_root: &Path, key: &str) -> Result<Self> {
        let path = tmp_root.join(format!("{key}.{}", unique_suffix()));
        tokio::fs::create_dir(&path)
            .await
            .map_err(|e| Error::io("cannot create", &path, e))?;
        Ok(TempDir { path, armed: true })
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = std::fs::remove_dir_all(&self.path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot remove temporary download folder");
                }
            }
        }
    }
}

/// True when `dir` holds at least one regular file, at any depth.
fn holds_a_file(dir: &Path) -> Result<bool> {
    let mut pending = vec![dir.to_path_buf()];
    while let Some(here) = pending.pop() {
        for entry in std::fs::read_dir(&here).map_err(|e| Error::io("cannot list", &here, e))? {
            let entry = entry.map_err(|e| Error::io("cannot list", &here, e))?;
            let kind = entry
                .file_type()
                .map_err(|e| Error::io("cannot read", entry.path(), e))?;
            if kind.is_file() {
                return Ok(true);
            }
            if kind.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    Ok(false)
}

/// Flushes a folder's entries to disk so the rename survives a power cut (best effort).
fn sync_dir(dir: Option<&Path>) {
    if let Some(dir) = dir {
        if let Ok(handle) = std::fs::File::open(dir) {
            let _ = handle.sync_all();
        }
    }
}

/// A model name as one safe path segment: `[A-Za-z0-9_.-]` kept (a leading `.` escaped), all
/// other bytes as `%XX`.
fn encode_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    async fn write_package(dir: PathBuf) -> Result<()> {
        std::fs::write(dir.join(MANIFEST_FILE), b"{}").map_err(|e| Error::io("write", &dir, e))?;
        std::fs::write(dir.join(WEIGHTS_FILE), [1u8, 2, 3])
            .map_err(|e| Error::io("write", &dir, e))?;
        Ok(())
    }

    fn tmp_entries(cache: &ModelCache) -> Vec<String> {
        match std::fs::read_dir(cache.root().join(TMP_DIR)) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    #[tokio::test]
    async fn fills_once_then_hits() {
        let root = tempfile::tempdir().unwrap();
        let cache = ModelCache::new(root.path().join("cache"));
        let first = cache.get_or_fill("det", 1, write_package).await.unwrap();
        assert!(first.downloaded);
        assert!(first.is_auralguard_package());
        assert_eq!(first.dir, cache.path_for("det", 1));
        assert_eq!(
            std::fs::read(first.dir.join(WEIGHTS_FILE)).unwrap(),
            [1, 2, 3]
        );

        let second = cache
            .get_or_fill("det", 1, |_| async {
                panic!("a cached version must not be downloaded again")
            })
            .await
            .unwrap();
        assert!(!second.downloaded);
        assert_eq!(second.dir, first.dir);
        assert!(tmp_entries(&cache).is_empty());
    }

    #[tokio::test]
    async fn evicted_version_is_downloaded_again() {
        let root = tempfile::tempdir().unwrap();
        let cache = ModelCache::new(root.path().join("cache"));
        assert!(
            !cache.evict("det", 1).await.unwrap(),
            "nothing to evict yet"
        );
        cache.get_or_fill("det", 1, write_package).await.unwrap();
        cache.get_or_fill("det", 2, write_package).await.unwrap();

        assert!(cache.evict("det", 1).await.unwrap());
        assert!(cache.get("det", 1).is_none());
        assert!(cache.get("det", 2).is_some(), "other versions stay");
        assert!(tmp_entries(&cache).is_empty(), "{:?}", tmp_entries(&cache));

        let again = cache.get_or_fill("det", 1, write_package).await.unwrap();
        assert!(again.downloaded);
    }

    #[tokio::test]
    async fn the_final_folder_appears_only_complete() {
        let root = tempfile::tempdir().unwrap();
        let cache = ModelCache::new(root.path());
        let final_dir = cache.path_for("det", 2);
        let seen = final_dir.clone();
        cache
            .get_or_fill("det", 2, |temp| async move {
                std::fs::write(temp.join(MANIFEST_FILE), b"{}").unwrap();
                assert!(!seen.exists(), "final folder visible mid-download");
                tokio::time::sleep(Duration::from_millis(20)).await;
                std::fs::write(temp.join(WEIGHTS_FILE), b"w").unwrap();
                assert!(!seen.exists(), "final folder visible mid-download");
                Ok(())
            })
            .await
            .unwrap();
        assert!(final_dir.join(MANIFEST_FILE).is_file() && final_dir.join(WEIGHTS_FILE).is_file());
    }

    #[tokio::test]
    async fn a_failed_or_empty_download_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        let cache = ModelCache::new(root.path());
        let err = cache
            .get_or_fill("det", 3, |temp| async move {
                std::fs::write(temp.join(MANIFEST_FILE), b"{}").unwrap();
                Err(Error::NotFound {
                    what: "weights".into(),
                })
            })
            .await
            .unwrap_err();
        assert!(err.is_not_found());
        assert!(!cache.path_for("det", 3).exists());
        assert!(tmp_entries(&cache).is_empty(), "{:?}", tmp_entries(&cache));

        let err = cache
            .get_or_fill("det", 3, |temp| async move {
                std::fs::create_dir(temp.join("only-a-folder")).unwrap();
                Ok(())
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidModel { .. }), "{err:?}");
        assert!(err.to_string().contains("models:/det/3"), "{err}");
        assert!(!cache.path_for("det", 3).exists());
        assert!(tmp_entries(&cache).is_empty());
    }

    #[tokio::test]
    async fn leftovers_of_a_crashed_download_are_removed() {
        let root = tempfile::tempdir().unwrap();
        let cache = ModelCache::new(root.path());
        let tmp = root.path().join(TMP_DIR);
        let stale = tmp.join("det@4.999999.123");
        let other = tmp.join("det@40.999999.123");
        for dir in [&stale, &other] {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join(WEIGHTS_FILE), b"half").unwrap();
        }
        let cached = cache.get_or_fill("det", 4, write_package).await.unwrap();
        assert!(cached.downloaded);
        assert!(
            !stale.exists(),
            "stale download of the same version removed"
        );
        assert!(other.exists(), "another version's download is left alone");
        assert_eq!(
            std::fs::read(cached.dir.join(WEIGHTS_FILE)).unwrap(),
            [1, 2, 3]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_callers_download_once() {
        let root = tempfile::tempdir().unwrap();
        let cache = ModelCache::new(root.path());
        let fills = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let (cache, fills) = (cache.clone(), fills.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fill("det", 5, |temp| async move {
                        fills.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        write_package(temp).await
                    })
                    .await
            }));
        }
        let mut downloaded = 0;
        for task in tasks {
            let cached = task.await.unwrap().unwrap();
            assert!(cached.is_auralguard_package());
            downloaded += usize::from(cached.downloaded);
        }
        assert_eq!(fills.load(Ordering::SeqCst), 1);
        assert_eq!(downloaded, 1);
    }

    #[test]
    fn names_cannot_escape_the_root() {
        let cache = ModelCache::new("/cache");
        for name in ["../etc", "a/b", ".", "..", "", "a\\b", ".hidden"] {
            let path = cache.path_for(name, 1);
            let relative = path.strip_prefix("/cache").unwrap();
            assert_eq!(relative.components().count(), 2, "{name:?} -> {path:?}");
            let first = relative
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .into_owned();
            assert!(!first.starts_with('.'), "{name:?} -> {first}");
        }
        assert_eq!(encode_segment("detector-v2.1_x"), "detector-v2.1_x");
        assert_eq!(encode_segment("my model"), "my%20model");
        assert_ne!(encode_segment("a/b"), encode_segment("a%2Fb"));
    }
}
