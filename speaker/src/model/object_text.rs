//! Two metadata texts the speaker keeps of every Service and EndpointSlice, held
//! without a heap block of their own in the form the API server gives them: a
//! `resourceVersion` of plain decimal digits as a number ([`Version`]), a canonical
//! UUID `uid` as its 16 bytes ([`Uid`]). Any other text is kept as text, so each
//! gives back exactly the text it was made from, and two are equal exactly when
//! their texts are.

use std::fmt;

/// A `metadata.resourceVersion`: only compared for equality (and shown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    /// Plain decimal digits, without a leading zero (but `0` itself), that fit.
    Number(u64),
    /// Any other text.
    Text(Box<str>),
}

impl Version {
    /// The version whose text is `text`.
    pub fn new(text: &str) -> Version {
        let canonical = !text.is_empty()
            && text.bytes().all(|byte| byte.is_ascii_digit())
            && (text == "0" || !text.starts_with('0'));
        match text.parse() {
            Ok(number) if canonical => Version::Number(number),
            _ => Version::Text(Box::from(text)),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Number(number) => write!(f, "{number}"),
            Version::Text(text) => f.write_str(text),
        }
    }
}

/// A `metadata.uid`: named by the reporter's Events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uid {
    /// A UUID in canonical form (lowercase hex, hyphenated 8-4-4-4-12).
    Uuid([u8; 16]),
    /// Any other text.
    Text(Box<str>),
}

/// Where the hyphens of a canonical UUID are.
const HYPHENS: [usize; 4] = [8, 13, 18, 23];

impl Uid {
    /// The uid whose text is `text`.
    pub fn new(text: &str) -> Uid {
        match uuid_bytes(text) {
            Some(bytes) => Uid::Uuid(bytes),
            None => Uid::Text(Box::from(text)),
        }
    }
}

/// The 16 bytes of `text` when it is a canonical UUID.
fn uuid_bytes(text: &str) -> Option<[u8; 16]> {
    let text = text.as_bytes();
    if text.len() != 36 || HYPHENS.iter().any(|&at| text[at] != b'-') {
        return None;
    }
    let mut digits = text
        .iter()
        .enumerate()
        .filter(|(at, _)| !HYPHENS.contains(at))
        .map(|(_, &digit)| match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            _ => None,
        });
    let mut bytes = [0; 16];
    for byte in &mut bytes {
        let high = digits.next()??;
        let low = digits.next()??;
        *byte = high << 4 | low;
    }
    Some(bytes)
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uid::Uuid(bytes) => {
                for (at, byte) in bytes.iter().enumerate() {
                    if matches!(at, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
            Uid::Text(text) => f.write_str(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn plain_decimal_versions_are_numbers_and_others_text() {
        for (text, number) in [("0", 0), ("1", 1), ("48213", 48213)] {
            assert_eq!(Version::new(text), Version::Number(number), "{text}");
        }
        let max = u64::MAX.to_string();
        assert_eq!(Version::new(&max), Version::Number(u64::MAX));
        let over = format!("{max}0");
        for text in [
            "",
            "00",
            "012",
            "+1",
            "-1",
            " 1",
            "1 ",
            "1a",
            "18446744073709551616",
            &over,
        ] {
            assert_eq!(Version::new(text), Version::Text(Box::from(text)), "{text}");
        }
    }

    #[test]
    fn canonical_uuids_are_bytes_and_others_text() {
        let uuid = "0123abcd-4567-89ef-fedc-ba9876543210";
        assert_eq!(
            Uid::new(uuid),
            Uid::Uuid([
                0x01, 0x23, 0xab, 0xcd, 0x45, 0x67, 0x89, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54,
                0x32, 0x10
            ])
        );
        assert_eq!(Uid::new(uuid).to_string(), uuid);
        for text in [
            "",
            "uid-a",
            "0123ABCD-4567-89ef-fedc-ba9876543210",
            "0123abcd-4567-89ef-fedc-ba98765432100",
            "0123abcd-4567-89ef-fedc-ba987654321",
            "0123abcd+4567-89ef-fedc-ba9876543210",
            "0123abcd-4567-89ef-fedcba9876543210-",
            "0123abcg-4567-89ef-fedc-ba9876543210",
            "{0123abcd-4567-89ef-fedc-ba98765432}",
            "0123abcd-4567-89ef-fedc-ba98765432é",
        ] {
            assert_eq!(Uid::new(text), Uid::Text(Box::from(text)), "{text}");
        }
    }

    /// Texts near the forms kept compactly: digits, hex, hyphens, and a few others.
    fn near_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9]{0,21}",
            "[0-9a-fA-F-]{36}",
            "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
            "[0-9a-zA-Z +-é]{0,40}",
        ]
    }

    proptest! {
        /// Both keep any text exactly: it comes back whole, and two are equal exactly
        /// when their texts are.
        #[test]
        fn versions_and_uids_give_back_their_text_and_equal_exactly_equal_texts(
            a in near_text(),
            b in near_text(),
        ) {
            prop_assert_eq!(Version::new(&a).to_string(), a.clone());
            prop_assert_eq!(Uid::new(&a).to_string(), a.clone());
            prop_assert_eq!(Version::new(&a) == Version::new(&b), a == b);
            prop_assert_eq!(Uid::new(&a) == Uid::new(&b), a == b);
            prop_assert_eq!(Version::new(&a), Version::new(&a.clone()));
            prop_assert_eq!(Uid::new(&a), Uid::new(&a.clone()));
        }
    }
}
