//! Artifact transfers: upload, list and download the files of runs and models through the
//! tracking server's artifact proxy.
//!
//! Every call takes an artifact URI (see [`ArtifactLocation`] for the accepted forms), resolves
//! it to a path behind the proxy, and moves files with the transport's retry rules: uploads are
//! streamed with their length, downloads are written to a temporary sibling and renamed, and
//! checked against the listing's sizes. Paths from a server listing are checked before any local
//! file is created from them.

use std::path::{Path, PathBuf};

use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::Method;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::artifact_location::{join_proxied, ArtifactLocation};
use crate::client::MlflowClient;
use crate::error::{Error, Result};
use crate::http::{Failure, Idempotency};

/// One entry of an artifact listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct FileInfo {
    /// Path relative to the listed folder, `/`-separated.
    pub path: String,
    /// True for a folder.
    pub is_dir: bool,
    /// Size in bytes, for files.
    #[serde(deserialize_with = "crate::wire::opt_i64_lenient")]
    pub file_size: Option<i64>,
}

/// What an upload or download moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transferred {
    /// The artifact folder (or file) URI, as `mlflow-artifacts:/...`; for an upload of a model
    /// folder this is the `source` to register a model version with.
    pub uri: String,
    /// Number of files.
    pub files: usize,
    /// Number of bytes.
    pub bytes: u64,
}

#[derive(Deserialize)]
struct ListResponse {
    #[serde(default)]
    files: Vec<FileInfo>,
}

impl MlflowClient {
    /// The proxy path of `location`, resolving `runs:/` and `models:/m-` through the server.
    pub async fn resolve_artifact_location(&self, location: &ArtifactLocation) -> Result<String> {
        let (root_uri, path) = match location {
            ArtifactLocation::Proxied { path } => return Ok(path.clone()),
            ArtifactLocation::Run { run_id, path } => {
                (self.get_run(run_id).await?.info.artifact_uri, path)
            }
            ArtifactLocation::LoggedModel { model_id, path } => (
                self.get_logged_model(model_id).await?.info.artifact_uri,
                path,
            ),
        };
        match ArtifactLocation::parse(&root_uri)? {
            // `path` came out of `parse` or `join`, so it is already clean.
            ArtifactLocation::Proxied { path: root } => Ok(join_proxied(&root, path)),
            other => Err(Error::InvalidUri {
                uri: root_uri.clone(),
                reason: format!(
                    "the artifact root of {location} is {other}, not a proxied location; \
                     check the experiment's artifact location"
                ),
            }),
        }
    }

    /// Lists one level of the artifact folder `uri` (paths relative to it). An empty list means
    /// an empty or missing folder, or a file.
    pub async fn list_artifacts(&self, uri: &str) -> Result<Vec<FileInfo>> {
        let path = self
            .resolve_artifact_location(&ArtifactLocation::parse(uri)?)
            .await?;
        self.list_proxied(&path).await
    }

    /// Lists every file under the artifact folder `uri`, recursively (paths relative to it).
    pub async fn list_artifacts_recursive(&self, uri: &str) -> Result<Vec<FileInfo>> {
        let path = self
            .resolve_artifact_location(&ArtifactLocation::parse(uri)?)
            .await?;
        self.list_proxied_recursive(&path).await
    }

    /// Uploads one local file into the artifact folder `dir_uri` (keeping its file name) and
    /// returns the file's `mlflow-artifacts:/` URI.
    pub async fn upload_file(&self, dir_uri: &str, local_file: &Path) -> Result<String> {
        let dir = self
            .resolve_artifact_location(&ArtifactLocation::parse(dir_uri)?)
            .await?;
        let name = local_file
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::InvalidParameter {
                message: format!(
                    "{} has no UTF-8 file name to upload under",
                    local_file.display()
                ),
            })?;
        let path = join_proxied(&dir, name);
        self.put_file(&path, local_file).await?;
        Ok(format!("mlflow-artifacts:/{path}"))
    }

    /// Uploads every file under `local_dir` into the artifact folder `dir_uri`, keeping the
    /// relative layout. Symbolic links are followed; empty folders are not recreated.
    pub async fn upload_dir(&self, dir_uri: &str, local_dir: &Path) -> Result<Transferred> {
        let dir = self
            .resolve_artifact_location(&ArtifactLocation::parse(dir_uri)?)
            .await?;
        let files = local_files(local_dir)?;
        let mut bytes = 0;
        for relative in &files {
            let remote = relative_to_remote(relative)?;
            bytes += self
                .put_file(&join_proxied(&dir, &remote), &local_dir.join(relative))
                .await?;
        }
        Ok(Transferred {
            uri: format!("mlflow-artifacts:/{dir}"),
            files: files.len(),
            bytes,
        })
    }

    /// Uploads one file to run `run_id`, under `artifact_dir` (`""` for the root); MLflow's
    /// `log_artifact`.
    pub async fn log_artifact(
        &self,
        run_id: &str,
        local_file: &Path,
        artifact_dir: &str,
    ) -> Result<String> {
        self.upload_file(&run_uri(run_id, artifact_dir), local_file)
            .await
    }

    /// Uploads a local folder to run `run_id`, under `artifact_dir` (e.g. `model`); MLflow's
    /// `log_artifacts`. The returned URI is what a model version is registered from.
    pub async fn log_artifacts(
        &self,
        run_id: &str,
        local_dir: &Path,
        artifact_dir: &str,
    ) -> Result<Transferred> {
        self.upload_dir(&run_uri(run_id, artifact_dir), local_dir)
            .await
    }

    /// Downloads the artifact file `uri` to `dest_file` (written to a temporary sibling, then
    /// renamed, so `dest_file` is never half-written). Returns the number of bytes.
    pub async fn download_file(&self, uri: &str, dest_file: &Path) -> Result<u64> {
        let path = self
            .resolve_artifact_location(&ArtifactLocation::parse(uri)?)
            .await?;
        let cap = self.transport.max_download_bytes();
        self.get_file(&path, dest_file, None, cap).await
    }

    /// Downloads everything under the artifact folder `uri` into `dest_dir` (created if needed),
    /// checking each file's size against the listing. A `uri` naming a single file downloads that
    /// file into `dest_dir`. [`Error::NotFound`] when nothing is there.
    pub async fn download_dir(&self, uri: &str, dest_dir: &Path) -> Result<Transferred> {
        let path = self
            .resolve_artifact_location(&ArtifactLocation::parse(uri)?)
            .await?;
        self.download_proxied_dir(&path, dest_dir).await
    }

    /// [`MlflowClient::download_dir`] for a proxy path already resolved.
    pub(crate) async fn download_proxied_dir(
        &self,
        path: &str,
        dest_dir: &Path,
    ) -> Result<Transferred> {
        let uri = format!("mlflow-artifacts:/{path}");
        let files = self.list_proxied_recursive(path).await?;
        let cap = self.transport.max_download_bytes();
        let listed: u64 = files
            .iter()
            .filter_map(|f| f.file_size.and_then(|s| u64::try_from(s).ok()))
            .fold(0, u64::saturating_add);
        if listed > cap {
            return Err(Error::TooLarge {
                url: uri,
                size: format!("{listed} bytes in {} files", files.len()),
                limit_bytes: cap,
            });
        }
        create_dir_all(dest_dir).await?;
        if files.is_empty() {
            // Either a single file, or nothing at all (then the GET answers 404 -> NotFound).
            let name = path.rsplit('/').next().unwrap_or(path);
            if name.is_empty() {
                return Err(Error::NotFound {
                    what: format!("artifacts at {uri}"),
                });
            }
            let bytes = self.get_file(path, &dest_dir.join(name), None, cap).await?;
            return Ok(Transferred {
                uri,
                files: 1,
                bytes,
            });
        }
        let mut bytes = 0;
        for file in &files {
            let local = dest_dir.join(safe_relative_path(&file.path, &uri)?);
            let expected = file.file_size.and_then(|s| u64::try_from(s).ok());
            // The listing's sizes are the server's word; the cap holds for what actually arrives.
            let budget = cap.saturating_sub(bytes);
            bytes += self
                .get_file(&join_proxied(path, &file.path), &local, expected, budget)
                .await?;
        }
        Ok(Transferred {
            uri,
            files: files.len(),
            bytes,
        })
    }

    /// One level of the proxy listing of `path`.
    async fn list_proxied(&self, path: &str) -> Result<Vec<FileInfo>> {
        let mut url = self.transport.artifact_url("")?;
        url.query_pairs_mut().append_pair("path", path);
        let url_ref = &url;
        let bytes = self
            .transport
            .run(url_ref, move || async move {
                let request = self.transport.request(Method::GET, url_ref.clone());
                let response = self
                    .transport
                    .send(request, url_ref, Idempotency::Idempotent)
                    .await?;
                response.bytes().await.map_err(|e| {
                    self.transport
                        .transport_failure(url_ref, e, Idempotency::Idempotent)
                })
            })
            .await?;
        let listing: ListResponse = serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        Ok(listing.files)
    }

    /// Every file under proxy path `path`, with paths relative to it.
    async fn list_proxied_recursive(&self, path: &str) -> Result<Vec<FileInfo>> {
        let mut files = Vec::new();
        let mut pending = vec![String::new()];
        while let Some(prefix) = pending.pop() {
            let listed = self.list_proxied(&join_proxied(path, &prefix)).await?;
            for entry in listed {
                // Entries are relative to the listed folder; keep only their last segment, checked.
                let name = entry.path.rsplit('/').next().unwrap_or("").to_string();
                safe_relative_path(&name, path)?;
                let relative = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                if entry.is_dir {
                    pending.push(relative);
                } else {
                    files.push(FileInfo {
                        path: relative,
                        ..entry
                    });
                }
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// PUTs `local_file` to proxy path `path`, streaming it with its length. Retried (a PUT
    /// overwrites). Returns the number of bytes.
    async fn put_file(&self, path: &str, local_file: &Path) -> Result<u64> {
        let url = self.transport.artifact_url(path)?;
        let len = tokio::fs::metadata(local_file)
            .await
            .map_err(|e| Error::io("cannot read", local_file, e))?
            .len();
        let url_ref = &url;
        self.transport
            .run(url_ref, move || async move {
                let file = tokio::fs::File::open(local_file)
                    .await
                    .map_err(|e| Error::io("cannot open", local_file, e))?;
                let request = self
                    .transport
                    .request(Method::PUT, url_ref.clone())
                    .timeout(self.transport.transfer_timeout())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, len)
                    .body(reqwest::Body::from(file));
                self.transport
                    .send(request, url_ref, Idempotency::Idempotent)
                    .await?;
                Ok(())
            })
            .await?;
        tracing::debug!(url = %url, bytes = len, "uploaded artifact");
        Ok(len)
    }

    /// GETs proxy path `path` into `dest` through a temporary sibling file, checking the length
    /// against `expected` (from the listing) and `Content-Length`, and refusing to write more than
    /// `budget` bytes (an announced length above it is refused before any byte is written).
    /// Retried from the start.
    async fn get_file(
        &self,
        path: &str,
        dest: &Path,
        expected: Option<u64>,
        budget: u64,
    ) -> Result<u64> {
        let url = self.transport.artifact_url(path)?;
        if let Some(parent) = dest.parent() {
            create_dir_all(parent).await?;
        }
        let partial = partial_path(dest);
        let (url_ref, partial_ref) = (&url, &partial);
        let result = self
            .transport
            .run(url_ref, move || async move {
                let request = self
                    .transport
                    .request(Method::GET, url_ref.clone())
                    .timeout(self.transport.transfer_timeout());
                let mut response = self
                    .transport
                    .send(request, url_ref, Idempotency::Idempotent)
                    .await?;
                let announced = response.content_length();
                let too_large = |size: String| {
                    Failure::Fatal(Error::TooLarge {
                        url: url_ref.to_string(),
                        size,
                        limit_bytes: budget,
                    })
                };
                if let Some(n) = announced.filter(|n| *n > budget) {
                    return Err(too_large(format!("{n} bytes (Content-Length)")));
                }
                let mut file = tokio::fs::File::create(partial_ref)
                    .await
                    .map_err(|e| Error::io("cannot create", partial_ref, e))?;
                let mut written: u64 = 0;
                while let Some(chunk) = response.chunk().await.map_err(|e| {
                    self.transport
                        .transport_failure(url_ref, e, Idempotency::Idempotent)
                })? {
                    written = written.saturating_add(chunk.len() as u64);
                    if written > budget {
                        return Err(too_large("more than the cap (streamed)".into()));
                    }
                    file.write_all(&chunk)
                        .await
                        .map_err(|e| Error::io("cannot write", partial_ref, e))?;
                }
                file.sync_all()
                    .await
                    .map_err(|e| Error::io("cannot sync", partial_ref, e))?;
                for wanted in [announced, expected].into_iter().flatten() {
                    if written != wanted {
                        return Err(Failure::Retry(
                            Error::Api {
                                status: 200,
                                code: "INCOMPLETE_DOWNLOAD".into(),
                                message: format!("received {written} bytes, expected {wanted}"),
                                url: url_ref.to_string(),
                            },
                            None,
                        ));
                    }
                }
                Ok(written)
            })
            .await;
        let written = match result {
            Ok(n) => n,
            Err(e) => {
                // Best effort: the partial file may not exist.
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(e);
            }
        };
        tokio::fs::rename(&partial, dest)
            .await
            .map_err(|e| Error::io("cannot move into place", dest, e))?;
        tracing::debug!(url = %url, bytes = written, "downloaded artifact");
        Ok(written)
    }
}

/// `runs:/<run_id>/<dir>`.
fn run_uri(run_id: &str, dir: &str) -> String {
    let dir = dir.trim_matches('/');
    if dir.is_empty() {
        format!("runs:/{run_id}")
    } else {
        format!("runs:/{run_id}/{dir}")
    }
}

/// Checks that a path from a server listing stays inside the destination folder.
fn safe_relative_path(path: &str, listed: &str) -> Result<PathBuf> {
    let unsafe_path = || Error::Decode {
        url: listed.to_string(),
        message: format!("the listing holds an unsafe path '{path}'"),
    };
    if path.is_empty() || path.starts_with('/') {
        return Err(unsafe_path());
    }
    let mut out = PathBuf::new();
    for segment in path.split('/') {
        if segment.is_empty()
            || segment == "."
            || segment == ".."
            || segment.contains('\\')
            || segment.contains('\0')
        {
            return Err(unsafe_path());
        }
        out.push(segment);
    }
    Ok(out)
}

/// A local relative path as a `/`-separated remote path (UTF-8 only).
fn relative_to_remote(relative: &Path) -> Result<String> {
    let mut parts = Vec::new();
    for component in relative.components() {
        let part = component
            .as_os_str()
            .to_str()
            .ok_or_else(|| Error::InvalidParameter {
                message: format!(
                    "{} is not UTF-8; artifact paths must be",
                    relative.display()
                ),
            })?;
        parts.push(part);
    }
    Ok(parts.join("/"))
}

/// Every regular file under `dir` (following links), as paths relative to it, sorted.
fn local_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(dir).map_err(|e| Error::io("cannot read", dir, e))?;
    if !meta.is_dir() {
        return Err(Error::InvalidParameter {
            message: format!("{} is not a folder", dir.display()),
        });
    }
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let here = dir.join(&relative);
        let entries = std::fs::read_dir(&here).map_err(|e| Error::io("cannot list", &here, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("cannot list", &here, e))?;
            let path = entry.path();
            let meta = std::fs::metadata(&path).map_err(|e| Error::io("cannot read", &path, e))?;
            let child = relative.join(entry.file_name());
            if meta.is_dir() {
                pending.push(child);
            } else if meta.is_file() {
                files.push(child);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `dest` with a hidden, unique temporary name beside it.
fn partial_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    dest.with_file_name(format!(".{name}.partial-{}-{nanos}", std::process::id()))
}

async fn create_dir_all(dir: &Path) -> Result<()> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| Error::io("cannot create folder", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_paths_are_checked_before_touching_disk() {
        assert_eq!(
            safe_relative_path("a/b.bin", "x").unwrap(),
            PathBuf::from("a").join("b.bin")
        );
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a\\b", "."] {
            assert!(safe_relative_path(bad, "x").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn local_files_are_listed_recursively_and_sorted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub/deeper")).unwrap();
        std::fs::create_dir_all(dir.path().join("empty")).unwrap();
        for f in ["b.txt", "a.txt", "sub/c.txt", "sub/deeper/d.txt"] {
            std::fs::write(dir.path().join(f), f).unwrap();
        }
        let files = local_files(dir.path()).unwrap();
        let remote: Vec<String> = files
            .iter()
            .map(|p| relative_to_remote(p).unwrap())
            .collect();
        assert_eq!(remote, ["a.txt", "b.txt", "sub/c.txt", "sub/deeper/d.txt"]);
        assert!(local_files(&dir.path().join("a.txt")).is_err());
    }
}
