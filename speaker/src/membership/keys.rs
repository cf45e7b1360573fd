//! Where the gossip keys come from: what the speaker's flags ask for, and
//! the text of a key file. Pure: the file is read by [`super::key_file`].
//!
//! Gossip is on unless `--no-gossip` says otherwise: a missing, empty or
//! too short key is an error, never a quiet fallback to the Node Ready
//! condition (which makes failover wait tens of seconds).
//!
//! A key file holds one key per line, the signing key first; surrounding
//! whitespace is trimmed, and blank lines and lines starting with `#` are
//! skipped. `--gossip-key` is taken byte for byte, as it always was.

use std::path::{Path, PathBuf};

use super::auth::{Authenticator, KeyError};

/// Where the key normally comes from, for error messages.
const KEY_SOURCES: &str = "--gossip-key / FERROLB_GOSSIP_KEY (the manifests read it from Secret \
     ferrolb-memberlist, key `secretkey`, which the controller creates) or --gossip-key-file / \
     FERROLB_GOSSIP_KEY_FILE";
/// How to turn gossip off on purpose, for error messages.
const NO_GOSSIP: &str = "to run without gossip, pass --no-gossip (FERROLB_NO_GOSSIP=true): \
     failover then waits for the Node to turn NotReady, tens of seconds";

/// What the gossip flags ask for.
#[derive(Debug)]
pub enum GossipKeys {
    /// `--no-gossip`: liveness from the Node Ready condition only.
    Off,
    /// `--gossip-key`: one key for the speaker's lifetime.
    Fixed(Authenticator),
    /// `--gossip-key-file`: the keys in this file, followed as it changes.
    File(PathBuf),
}

/// Why the gossip flags cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyConfigError {
    /// Neither a key, nor a key file, nor `--no-gossip`.
    #[error("no gossip key: set {KEY_SOURCES}; {NO_GOSSIP}")]
    Missing,
    /// `--gossip-key` is empty, blank or too short.
    #[error(
        "--gossip-key / FERROLB_GOSSIP_KEY (from Secret ferrolb-memberlist, key `secretkey`) is unusable: {0}; {NO_GOSSIP}"
    )]
    BadKey(KeyError),
    /// `--gossip-key-file` is an empty path.
    #[error("--gossip-key-file / FERROLB_GOSSIP_KEY_FILE is empty; {NO_GOSSIP}")]
    EmptyKeyFilePath,
    /// Both a key and a key file: which one signs would be a guess.
    #[error("--gossip-key and --gossip-key-file are both set; give only one")]
    KeyAndKeyFile,
    /// `--no-gossip` and a key: which one was meant would be a guess.
    #[error("--no-gossip is set together with a gossip key; give only one")]
    OffWithKey,
}

/// What `key`, `key_file` and `no_gossip` (the flags, or their variables)
/// ask for. A key given but empty counts as given.
pub fn choose(
    key: Option<&str>,
    key_file: Option<&Path>,
    no_gossip: bool,
) -> Result<GossipKeys, KeyConfigError> {
    match (key, key_file, no_gossip) {
        (None, None, true) => Ok(GossipKeys::Off),
        (Some(_), _, true) | (_, Some(_), true) => Err(KeyConfigError::OffWithKey),
        (Some(_), Some(_), false) => Err(KeyConfigError::KeyAndKeyFile),
        (None, None, false) => Err(KeyConfigError::Missing),
        (Some(key), None, false) => Authenticator::new(&[key.as_bytes()])
            .map(GossipKeys::Fixed)
            .map_err(KeyConfigError::BadKey),
        (None, Some(path), false) if path.as_os_str().is_empty() => {
            Err(KeyConfigError::EmptyKeyFilePath)
        }
        (None, Some(path), false) => Ok(GossipKeys::File(path.to_path_buf())),
    }
}

/// The keys in a key file's `text`, in order: each line trimmed, blank
/// lines and `#` comments skipped.
pub fn parse_key_file(text: &[u8]) -> Vec<&[u8]> {
    text.split(|&byte| byte == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|line| !line.is_empty() && !line.starts_with(b"#"))
        .collect()
}

/// The authenticator for a key file's `text`.
pub fn authenticator_from_file(text: &[u8]) -> Result<Authenticator, KeyError> {
    Authenticator::new(&parse_key_file(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "a key long enough to use";

    #[test]
    fn a_missing_key_is_refused_naming_the_flag_the_variable_the_secret_and_the_way_out() {
        let error = choose(None, None, false).expect_err("no key");
        assert_eq!(error, KeyConfigError::Missing);
        let message = error.to_string();
        for name in [
            "--gossip-key",
            "FERROLB_GOSSIP_KEY",
            "ferrolb-memberlist",
            "--gossip-key-file",
            "--no-gossip",
            "NotReady",
        ] {
            assert!(message.contains(name), "{name} missing from: {message}");
        }
    }

    #[test]
    fn an_empty_or_blank_key_is_refused() {
        for blank in ["", " ", "\n", "\t  \r\n"] {
            let error = choose(Some(blank), None, false).expect_err("blank key");
            assert_eq!(
                error,
                KeyConfigError::BadKey(KeyError::Blank { position: 1 }),
                "{blank:?}"
            );
            let message = error.to_string();
            for name in ["--gossip-key", "FERROLB_GOSSIP_KEY", "ferrolb-memberlist"] {
                assert!(message.contains(name), "{name} missing from: {message}");
            }
        }
    }

    #[test]
    fn a_short_key_is_refused_with_its_length() {
        let error = choose(Some("hunter2"), None, false).expect_err("short key");
        assert_eq!(
            error,
            KeyConfigError::BadKey(KeyError::TooShort {
                position: 1,
                len: 7
            })
        );
        assert!(!error.to_string().contains("hunter2"));
    }

    #[test]
    fn a_good_key_is_taken_as_it_is() {
        let Ok(GossipKeys::Fixed(auth)) = choose(Some(KEY), None, false) else {
            panic!("the key was refused");
        };
        // Byte for byte, surrounding whitespace included.
        let padded = format!(" {KEY}\n");
        let Ok(GossipKeys::Fixed(padded_auth)) = choose(Some(&padded), None, false) else {
            panic!("the padded key was refused");
        };
        let datagram = auth.seal(b"x");
        assert!(padded_auth.open(&datagram).is_err());
        let same = Authenticator::new(&[KEY.as_bytes()]).expect("the key is good");
        assert_eq!(same.open(&datagram), Ok(&b"x"[..]));
    }

    #[test]
    fn no_gossip_is_only_taken_alone() {
        assert!(matches!(choose(None, None, true), Ok(GossipKeys::Off)));
        let file = Path::new("/keys");
        for (key, key_file) in [(Some(KEY), None), (None, Some(file)), (Some(""), None)] {
            assert_eq!(
                choose(key, key_file, true).err(),
                Some(KeyConfigError::OffWithKey)
            );
        }
    }

    #[test]
    fn a_key_file_is_taken_alone_and_not_empty() {
        let file = Path::new("/etc/ferrolb/keys");
        assert!(
            matches!(choose(None, Some(file), false), Ok(GossipKeys::File(path)) if path == file)
        );
        assert_eq!(
            choose(Some(KEY), Some(file), false).err(),
            Some(KeyConfigError::KeyAndKeyFile)
        );
        assert_eq!(
            choose(None, Some(Path::new("")), false).err(),
            Some(KeyConfigError::EmptyKeyFilePath)
        );
    }

    #[test]
    fn a_key_file_is_one_key_a_line_without_blanks_and_comments() {
        let text = b"# rotated on Monday\n  new key  \r\n\n\t\nold key\n# done\n";
        assert_eq!(parse_key_file(text), vec![&b"new key"[..], b"old key"]);
        assert_eq!(parse_key_file(b""), Vec::<&[u8]>::new());
        assert_eq!(parse_key_file(b"only"), vec![&b"only"[..]]);
        // A mounted Secret holds the key without a newline.
        assert_eq!(parse_key_file(KEY.as_bytes()), vec![KEY.as_bytes()]);
    }

    #[test]
    fn a_key_file_signs_with_its_first_key() {
        let text = format!("{KEY} two\n{KEY} one\n");
        let auth = authenticator_from_file(text.as_bytes()).expect("two good keys");
        assert_eq!(auth.key_count(), 2);
        let second = Authenticator::new(&[format!("{KEY} two")]).expect("a good key");
        let first = Authenticator::new(&[format!("{KEY} one")]).expect("a good key");
        assert_eq!(second.open(&auth.seal(b"x")), Ok(&b"x"[..]));
        assert!(first.open(&auth.seal(b"x")).is_err());
        assert_eq!(auth.open(&first.seal(b"y")), Ok(&b"y"[..]));
    }

    #[test]
    fn a_key_file_without_keys_or_with_a_bad_one_is_refused() {
        assert_eq!(
            authenticator_from_file(b"# nothing yet\n\n").err(),
            Some(KeyError::NoKeys)
        );
        let text = format!("{KEY}\nshort\n");
        assert_eq!(
            authenticator_from_file(text.as_bytes()).err(),
            Some(KeyError::TooShort {
                position: 2,
                len: 5
            })
        );
    }
}
