//! Files of RFC 5547 transfers: what we offer (name, size, hashes), and on the receiving side the
//! partial file `<save-dir>/<name>.part` with its sidecar `<name>.part.meta`, so an interrupted
//! transfer of the same file resumes where it stopped.

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use tandem_proto::msrp::ChunkSink;
use tandem_proto::msrp::sdp::{FileHash, FileSelector};
use tokio::sync::{OwnedMutexGuard, watch};

use super::MsrpError;

/// Longest file name kept (longer offered names are cut).
const MAX_NAME: usize = 200;
/// Buffer for hashing.
const HASH_BUF: usize = 256 * 1024;

/// A file we offer: its name, size, type and hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// The file on disk.
    pub path: PathBuf,
    /// The name offered (the last path component).
    pub name: String,
    /// The size in bytes.
    pub size: u64,
    /// The media type offered.
    pub media_type: String,
    /// SHA-1 of the contents (RFC 5547 `hash:sha-1`).
    pub sha1: [u8; 20],
    /// SHA-256 of the contents (hex), for reports to the user.
    pub sha256: String,
}

impl FileInfo {
    /// Reads `path` once to compute its size and hashes (blocking: call from `spawn_blocking`).
    pub fn from_path(path: &Path) -> Result<FileInfo, MsrpError> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                MsrpError::Config(format!("{} has no usable file name", path.display()))
            })?
            .to_owned();
        let file = std::fs::File::open(path)
            .map_err(|e| MsrpError::Io(format!("cannot open {}: {e}", path.display())))?;
        let meta = file
            .metadata()
            .map_err(|e| MsrpError::Io(format!("{}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(MsrpError::Config(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        let (size, sha1, sha256) = hash_reader(file)
            .map_err(|e| MsrpError::Io(format!("reading {}: {e}", path.display())))?;
        Ok(FileInfo {
            path: path.to_path_buf(),
            media_type: guess_media_type(&name).to_owned(),
            name,
            size,
            sha1,
            sha256,
        })
    }

    /// The `a=file-selector` of this file.
    pub fn selector(&self) -> FileSelector {
        FileSelector {
            name: Some(self.name.clone()),
            media_type: Some(self.media_type.clone()),
            size: Some(self.size),
            hashes: vec![FileHash {
                algorithm: "sha-1".to_owned(),
                value: self.sha1.to_vec(),
            }],
        }
    }
}

/// Size, SHA-1 and hex SHA-256 of everything `r` yields.
pub(crate) fn hash_reader(mut r: impl Read) -> io::Result<(u64, [u8; 20], String)> {
    let mut sha1 = Sha1::new();
    let mut sha256 = Sha256::new();
    let mut buf = vec![0u8; HASH_BUF];
    let mut size = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let data = buf.get(..n).unwrap_or_default();
        sha1.update(data);
        sha256.update(data);
        size += n as u64;
    }
    Ok((size, sha1.finalize().into(), hex::encode(sha256.finalize())))
}

/// A media type from the file extension (application/octet-stream when unknown).
pub fn guess_media_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" => "text/plain",
        "html" | "htm" => "text/html",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "pdf" => "application/pdf",
        "wav" => "audio/wav",
        "ogg" | "opus" => "audio/ogg",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

/// A file name from an offer made safe to use inside the save directory: no directories,
/// no leading dots, no control characters.
pub fn safe_file_name(offered: Option<&str>) -> String {
    let raw = offered.unwrap_or_default();
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| {
            if matches!(c, ':' | '*' | '?' | '"' | '<' | '>' | '|') {
                '_'
            } else {
                c
            }
        })
        .take(MAX_NAME)
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_owned();
    if cleaned.is_empty() {
        "received.bin".to_owned()
    } else {
        cleaned
    }
}

/// The sidecar of a partial file: which transfer the bytes belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartMeta {
    pub name: String,
    pub size: u64,
    pub sha1: String,
}

impl PartMeta {
    fn to_text(&self) -> String {
        format!(
            "tandem-msrp-part 1\nname={}\nsize={}\nsha1={}\n",
            self.name, self.size, self.sha1
        )
    }

    fn parse(text: &str) -> Option<PartMeta> {
        let mut lines = text.lines();
        if lines.next()? != "tandem-msrp-part 1" {
            return None;
        }
        let (mut name, mut size, mut sha1) = (None, None, None);
        for line in lines {
            match line.split_once('=') {
                Some(("name", v)) => name = Some(v.to_owned()),
                Some(("size", v)) => size = v.parse().ok(),
                Some(("sha1", v)) => sha1 = Some(v.to_owned()),
                _ => {}
            }
        }
        Some(PartMeta {
            name: name?,
            size: size?,
            sha1: sha1?,
        })
    }
}

/// The receiving side of one file: where the partial and final files live.
#[derive(Debug, Clone)]
pub(crate) struct PartFile {
    pub dir: PathBuf,
    pub name: String,
    pub meta: PartMeta,
}

impl PartFile {
    /// The receiving state for an offered file in `dir`.
    pub fn new(dir: &Path, selector: &FileSelector) -> Result<PartFile, MsrpError> {
        let size = selector
            .size
            .ok_or_else(|| MsrpError::Protocol("the file offer has no size".into()))?;
        let name = safe_file_name(selector.name.as_deref());
        Ok(PartFile {
            dir: dir.to_path_buf(),
            meta: PartMeta {
                name: name.clone(),
                size,
                sha1: selector.sha1().map(hex::encode).unwrap_or_default(),
            },
            name,
        })
    }

    /// `<dir>/<name>.part`.
    pub fn part_path(&self) -> PathBuf {
        self.dir.join(format!("{}.part", self.name))
    }

    fn meta_path(&self) -> PathBuf {
        self.dir.join(format!("{}.part.meta", self.name))
    }

    /// How many leading bytes of this very file we already hold (0 without a matching part).
    /// A part of another transfer under the same name is discarded.
    pub fn resume_point(&self) -> u64 {
        let Ok(text) = std::fs::read_to_string(self.meta_path()) else {
            return 0;
        };
        let same = PartMeta::parse(&text).is_some_and(|m| m == self.meta && !m.sha1.is_empty());
        if !same {
            return 0;
        }
        match std::fs::metadata(self.part_path()) {
            Ok(m) if m.is_file() => m.len().min(self.meta.size),
            _ => 0,
        }
    }

    /// Opens the part file for writing from `keep` (truncating anything after it) and writes
    /// the sidecar.
    pub fn open(&self, keep: u64) -> Result<std::fs::File, MsrpError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| MsrpError::Io(format!("cannot create {}: {e}", self.dir.display())))?;
        let path = self.part_path();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| MsrpError::Io(format!("cannot open {}: {e}", path.display())))?;
        file.set_len(keep)
            .map_err(|e| MsrpError::Io(format!("{}: {e}", path.display())))?;
        let mut meta = std::fs::File::create(self.meta_path())
            .map_err(|e| MsrpError::Io(format!("cannot write the sidecar: {e}")))?;
        meta.write_all(self.meta.to_text().as_bytes())
            .and_then(|()| meta.sync_all())
            .map_err(|e| MsrpError::Io(format!("cannot write the sidecar: {e}")))?;
        Ok(file)
    }

    /// Checks the complete part against the offered hash, then moves it to its final name
    /// (`name`, or `name (N)` when taken) and removes the sidecar; returns the path and SHA-256.
    pub fn finish(&self) -> Result<(PathBuf, u64, String), MsrpError> {
        let part = self.part_path();
        let file = std::fs::File::open(&part)
            .map_err(|e| MsrpError::Io(format!("cannot read {}: {e}", part.display())))?;
        let (size, sha1, sha256) =
            hash_reader(file).map_err(|e| MsrpError::Io(format!("{}: {e}", part.display())))?;
        if size != self.meta.size {
            return Err(MsrpError::Protocol(format!(
                "received {size} bytes, the offer said {}",
                self.meta.size
            )));
        }
        if !self.meta.sha1.is_empty() && hex::encode(sha1) != self.meta.sha1 {
            let _ = std::fs::remove_file(&part);
            let _ = std::fs::remove_file(self.meta_path());
            return Err(MsrpError::Protocol(
                "the received file does not match the offered SHA-1".into(),
            ));
        }
        let mut target = self.dir.join(&self.name);
        let mut n = 1;
        while target.exists() {
            let (stem, ext) = match self.name.rsplit_once('.') {
                Some((s, e)) if !s.is_empty() => (s.to_owned(), format!(".{e}")),
                _ => (self.name.clone(), String::new()),
            };
            target = self.dir.join(format!("{stem} ({n}){ext}"));
            n += 1;
        }
        std::fs::rename(&part, &target)
            .map_err(|e| MsrpError::Io(format!("cannot rename {}: {e}", part.display())))?;
        let _ = std::fs::remove_file(self.meta_path());
        Ok((target, size, sha256))
    }
}

/// A chunk sink writing a file from byte `keep` on: bytes before it are already on disk (a
/// resumed transfer), so writes below it are skipped.
pub(crate) struct PartSink {
    file: std::fs::File,
    keep: u64,
}

impl PartSink {
    /// A sink over `file` keeping its first `keep` bytes.
    pub fn new(file: std::fs::File, keep: u64) -> Self {
        PartSink { file, keep }
    }
}

impl ChunkSink for PartSink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset.saturating_add(data.len() as u64);
        if end <= self.keep {
            return Ok(());
        }
        let skip = usize::try_from(self.keep.saturating_sub(offset)).unwrap_or(usize::MAX);
        let data = data.get(skip..).unwrap_or_default();
        self.file.seek(SeekFrom::Start(offset.max(self.keep)))?;
        self.file.write_all(data)
    }

    fn finish(&mut self, _total: u64) -> io::Result<Option<Bytes>> {
        self.file.flush()?;
        self.file.sync_data()?;
        Ok(None)
    }
}

/// One receiving session's hold on a part file: dropping it releases the file.
#[derive(Debug)]
pub(crate) struct PartLock {
    _guard: OwnedMutexGuard<()>,
    /// Set when a newer offer of the same file wants the part: stop receiving.
    pub superseded: watch::Receiver<bool>,
}

struct Holder {
    lock: Arc<tokio::sync::Mutex<()>>,
    cancel: watch::Sender<bool>,
}

fn holders() -> &'static Mutex<HashMap<PathBuf, Holder>> {
    static HOLDERS: OnceLock<Mutex<HashMap<PathBuf, Holder>>> = OnceLock::new();
    HOLDERS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Takes a part file for a new receiving session: an older session still holding it (its
/// sender vanished without a BYE) is told to stop, and we wait for it to let go.
pub(crate) async fn lock_part(path: &Path) -> Result<PartLock, MsrpError> {
    let (lock, cancel_old) = {
        let mut map = holders().lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(path.to_path_buf()).or_insert_with(|| Holder {
            lock: Arc::new(tokio::sync::Mutex::new(())),
            cancel: watch::channel(false).0,
        });
        let (tx, _) = watch::channel(false);
        let old = std::mem::replace(&mut entry.cancel, tx);
        (entry.lock.clone(), old)
    };
    let _ = cancel_old.send(true);
    let guard = tokio::time::timeout(Duration::from_secs(10), lock.lock_owned())
        .await
        .map_err(|_| MsrpError::Io(format!("{} is busy", path.display())))?;
    let superseded = {
        let map = holders().lock().unwrap_or_else(|p| p.into_inner());
        match map.get(path) {
            Some(h) => h.cancel.subscribe(),
            None => watch::channel(false).1,
        }
    };
    Ok(PartLock {
        _guard: guard,
        superseded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_safe() {
        assert_eq!(safe_file_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(safe_file_name(Some("C:\\x\\y.txt")), "y.txt");
        assert_eq!(safe_file_name(Some(".hidden")), "hidden");
        assert_eq!(safe_file_name(Some("a\u{0}b?.bin")), "ab_.bin");
        assert_eq!(safe_file_name(None), "received.bin");
        assert_eq!(safe_file_name(Some("..")), "received.bin");
    }

    #[test]
    fn sidecar_round_trip_and_resume_point() {
        let dir = tempfile::tempdir().unwrap();
        let selector = FileSelector {
            name: Some("f.bin".into()),
            media_type: None,
            size: Some(10),
            hashes: vec![FileHash {
                algorithm: "sha-1".into(),
                value: vec![1; 20],
            }],
        };
        let part = PartFile::new(dir.path(), &selector).unwrap();
        assert_eq!(part.resume_point(), 0);
        let mut f = part.open(0).unwrap();
        f.write_all(b"hello").unwrap();
        drop(f);
        assert_eq!(part.resume_point(), 5);
        // Another file under the same name does not resume.
        let mut other = selector.clone();
        other.hashes[0].value = vec![2; 20];
        assert_eq!(PartFile::new(dir.path(), &other).unwrap().resume_point(), 0);
        let mut bigger = selector.clone();
        bigger.size = Some(11);
        assert_eq!(
            PartFile::new(dir.path(), &bigger).unwrap().resume_point(),
            0
        );
    }

    #[test]
    fn part_sink_skips_kept_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, b"ABCD").unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let mut sink = PartSink::new(file, 4);
        sink.write_at(0, b"zz").unwrap();
        sink.write_at(2, b"zzEF").unwrap();
        sink.write_at(6, b"GH").unwrap();
        sink.finish(8).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"ABCDEFGH");
    }

    #[test]
    fn finish_checks_the_hash_and_renames() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"some file contents";
        let (_, sha1, sha256) = hash_reader(&data[..]).unwrap();
        let selector = FileSelector {
            name: Some("doc.txt".into()),
            media_type: None,
            size: Some(data.len() as u64),
            hashes: vec![FileHash {
                algorithm: "sha-1".into(),
                value: sha1.to_vec(),
            }],
        };
        std::fs::write(dir.path().join("doc.txt"), b"older").unwrap();
        let part = PartFile::new(dir.path(), &selector).unwrap();
        let mut f = part.open(0).unwrap();
        f.write_all(data).unwrap();
        drop(f);
        let (path, size, hash) = part.finish().unwrap();
        assert_eq!(path, dir.path().join("doc (1).txt"));
        assert_eq!(size, data.len() as u64);
        assert_eq!(hash, sha256);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert!(!part.part_path().exists());

        let mut f = part.open(0).unwrap();
        f.write_all(b"different contents!").unwrap();
        drop(f);
        assert!(part.finish().is_err());
    }
}
