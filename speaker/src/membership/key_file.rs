//! Follows a gossip key file (`--gossip-key-file`): reads it at start, then
//! every few seconds, and hands a new [`Authenticator`] over whenever its
//! text changes to a valid key list. A missing or invalid file after the
//! start keeps the keys in use and is logged once per change; the keys are
//! never logged. Parsing is in [`super::keys`].

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::auth::{Authenticator, KeyError};
use super::keys::authenticator_from_file;

/// How often the file is read again. A mounted Secret changes on the
/// kubelet's sync, a minute or so after the Secret itself; this adds little.
pub const POLL_EVERY: Duration = Duration::from_secs(5);

/// The largest key file read; eight keys fit many times over.
const MAX_BYTES: u64 = 64 * 1024;

/// Why the key file gave no keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// It could not be read.
    #[error("reading the gossip key file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// It is too large to be a key file.
    #[error("the gossip key file {path} is larger than {MAX_BYTES} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Its keys cannot be used.
    #[error("the gossip key file {path}: {source}")]
    Keys {
        /// The file.
        path: PathBuf,
        /// What is wrong with the keys.
        source: KeyError,
    },
}

/// What the last read found: the text, or the error's description (so that
/// a lasting error is reported once).
#[derive(PartialEq, Eq)]
enum Seen {
    Text(Vec<u8>),
    Failed(String),
}

/// A key file and what was last read from it.
pub struct KeyFile {
    path: PathBuf,
    seen: Seen,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, KeyFileError> {
    let read_error = |source| KeyFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut text = Vec::new();
    std::fs::File::open(path)
        .map_err(read_error)?
        .take(MAX_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(read_error)?;
    if text.len() as u64 > MAX_BYTES {
        return Err(KeyFileError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(text)
}

impl KeyFile {
    /// Reads `path` for the first time: any error is the caller's to stop on.
    pub fn load(path: PathBuf) -> Result<(KeyFile, Authenticator), KeyFileError> {
        let text = read_bounded(&path)?;
        let authenticator =
            authenticator_from_file(&text).map_err(|source| KeyFileError::Keys {
                path: path.clone(),
                source,
            })?;
        let file = KeyFile {
            path,
            seen: Seen::Text(text),
        };
        Ok((file, authenticator))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file again. `None` when nothing changed since the last
    /// read (the same text, or the same error); otherwise the new keys, or
    /// why there are none.
    pub fn poll(&mut self) -> Option<Result<Authenticator, KeyFileError>> {
        let result = read_bounded(&self.path);
        let seen = match &result {
            Ok(text) => Seen::Text(text.clone()),
            Err(error) => Seen::Failed(error.to_string()),
        };
        if seen == self.seen {
            return None;
        }
        self.seen = seen;
        Some(result.and_then(|text| {
            authenticator_from_file(&text).map_err(|source| KeyFileError::Keys {
                path: self.path.clone(),
                source,
            })
        }))
    }
}

/// Reads `file` every `every` and hands each new valid key list to
/// `apply`, until `apply` returns false (the gossip has stopped).
pub async fn follow(
    mut file: KeyFile,
    every: Duration,
    mut apply: impl FnMut(Authenticator) -> bool,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; the file was read just before.
    ticks.tick().await;
    loop {
        ticks.tick().await;
        match file.poll() {
            None => {}
            Some(Ok(authenticator)) => {
                tracing::info!(
                    path = %file.path().display(),
                    keys = authenticator.key_count(),
                    "gossip key file changed; signing with its first key, accepting all of them"
                );
                if !apply(authenticator) {
                    return;
                }
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "gossip key file unusable; keeping the keys in use");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "first key, long enough";
    const K2: &str = "second key, long enough";

    fn signs_with(auth: &Authenticator, key: &str) -> bool {
        let only = Authenticator::new(&[key]).expect("a good key");
        only.open(&auth.seal(b"probe")).is_ok()
    }

    #[test]
    fn a_missing_or_bad_file_is_refused_at_start() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("keys");
        assert!(matches!(
            KeyFile::load(path.clone()),
            Err(KeyFileError::Read { .. })
        ));
        std::fs::write(&path, "# no keys\n").expect("write the file");
        let error = KeyFile::load(path.clone()).expect_err("no keys");
        assert!(matches!(
            error,
            KeyFileError::Keys {
                source: KeyError::NoKeys,
                ..
            }
        ));
        assert!(error.to_string().contains("keys"), "{error}");
        std::fs::write(&path, vec![b'k'; 70_000]).expect("write the file");
        assert!(matches!(
            KeyFile::load(path),
            Err(KeyFileError::TooLarge { .. })
        ));
    }

    #[test]
    fn poll_reports_each_change_once() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("keys");
        std::fs::write(&path, format!("{K1}\n")).expect("write the file");
        let (mut file, first) = KeyFile::load(path.clone()).expect("a good file");
        assert!(signs_with(&first, K1));
        assert!(file.poll().is_none(), "unchanged");

        std::fs::write(&path, format!("{K2}\n{K1}\n")).expect("write the file");
        let rotated = file.poll().expect("a change").expect("good keys");
        assert_eq!(rotated.key_count(), 2);
        assert!(signs_with(&rotated, K2));
        assert!(file.poll().is_none(), "unchanged");

        std::fs::write(&path, "short\n").expect("write the file");
        assert!(matches!(file.poll(), Some(Err(KeyFileError::Keys { .. }))));
        assert!(file.poll().is_none(), "the same bad text is reported once");

        std::fs::remove_file(&path).expect("remove the file");
        assert!(matches!(file.poll(), Some(Err(KeyFileError::Read { .. }))));
        assert!(file.poll().is_none(), "the same error is reported once");

        std::fs::write(&path, format!("{K2}\n")).expect("write the file");
        let last = file.poll().expect("a change").expect("good keys");
        assert_eq!(last.key_count(), 1);
        assert!(signs_with(&last, K2));
    }

    #[tokio::test]
    async fn follow_hands_over_new_keys_and_stops_when_told() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("keys");
        std::fs::write(&path, format!("{K1}\n")).expect("write the file");
        let (file, _) = KeyFile::load(path.clone()).expect("a good file");
        let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(follow(file, Duration::from_millis(20), move |auth| {
            sender.send(auth).is_ok()
        }));

        std::fs::write(&path, format!("{K2}\n{K1}\n")).expect("write the file");
        let rotated = tokio::time::timeout(Duration::from_secs(5), received.recv())
            .await
            .expect("the change was noticed")
            .expect("an authenticator");
        assert_eq!(rotated.key_count(), 2);
        assert!(signs_with(&rotated, K2));

        // A bad file is not handed over.
        std::fs::write(&path, "\n").expect("write the file");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(received.try_recv().is_err());

        // `apply` saying no (the receiver is gone) ends the task.
        drop(received);
        std::fs::write(&path, format!("{K2}\n")).expect("write the file");
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("follow stopped")
            .expect("follow did not panic");
    }
}
