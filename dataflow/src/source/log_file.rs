//! An input log file: its path, size and header.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use model::log::{HeaderError, LogColumns};

use super::blocks::MAX_LINE_BYTES;

/// Why the input cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A path cannot be opened or read.
    #[error("cannot read {path}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A file's header is unusable.
    #[error("{path}")]
    Header {
        /// The path.
        path: String,
        /// The cause.
        source: HeaderError,
    },
    /// A directory holds no `.csv` file.
    #[error("{0}: no .csv files in directory")]
    EmptyDirectory(String),
}

/// A log file whose header was read.
#[derive(Debug, Clone)]
pub struct LogFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its size in bytes when it was opened.
    pub len: u64,
    /// Where the event fields are; `None` for an empty file.
    pub columns: Option<LogColumns>,
}

impl LogFile {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        let io = |source| SourceError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len == 0 {
            return Ok(LogFile {
                path: path.to_owned(),
                len,
                columns: None,
            });
        }
        let mut head = vec![0; (MAX_LINE_BYTES as u64 + 1).min(len) as usize];
        file.read_exact_at(&mut head, 0).map_err(io)?;
        let header = match memchr::memchr(b'\n', &head) {
            Some(end) => &head[..end],
            None if head.len() as u64 == len => &head[..],
            None => {
                return Err(SourceError::Header {
                    path: path.display().to_string(),
                    source: HeaderError::Unreadable(format!(
                        "header longer than {MAX_LINE_BYTES} bytes"
                    )),
                });
            }
        };
        let columns = LogColumns::from_header(header).map_err(|source| SourceError::Header {
            path: path.display().to_string(),
            source,
        })?;
        Ok(LogFile {
            path: path.to_owned(),
            len,
            columns: Some(columns),
        })
    }

    /// The files named by `paths`: files as given, directories as their `.csv` files in
    /// name order.
    pub fn discover(paths: &[PathBuf]) -> Result<Vec<LogFile>, SourceError> {
        let mut files = Vec::new();
        for path in paths {
            let io = |source| SourceError::Io {
                path: path.display().to_string(),
                source,
            };
            if path.is_dir() {
                let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                    .map_err(io)?
                    .filter_map(|entry| entry.ok().map(|e| e.path()))
                    .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "csv"))
                    .collect();
                if found.is_empty() {
                    return Err(SourceError::EmptyDirectory(path.display().to_string()));
                }
                found.sort();
                for file in found {
                    files.push(LogFile::open(&file)?);
                }
            } else {
                files.push(LogFile::open(path)?);
            }
        }
        Ok(files)
    }
}
