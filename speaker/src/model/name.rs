//! [`Name`]: an object's name as the stores and the view cache key it, held in place
//! when short (most Kubernetes names are) rather than in a heap block of its own.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

/// The longest text held in place.
const INLINE: usize = 22;

/// A text, in place up to 22 bytes, else boxed; 24 bytes either way. Hashed, compared
/// and borrowed as its `str`, so a map keyed by names is searched with a `&str`.
#[derive(Clone)]
pub struct Name(Form);

#[derive(Clone)]
enum Form {
    Inline { len: u8, bytes: [u8; INLINE] },
    Boxed(Box<str>),
}

impl Name {
    /// The text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Form::Inline { len, bytes } => {
                // Only ever filled from a whole `str` of `len` bytes (`From<&str>`).
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Form::Boxed(text) => text,
        }
    }
}

impl From<&str> for Name {
    fn from(text: &str) -> Name {
        match u8::try_from(text.len()) {
            Ok(len) if text.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..text.len()].copy_from_slice(text.as_bytes());
                Name(Form::Inline { len, bytes })
            }
            _ => Name(Form::Boxed(Box::from(text))),
        }
    }
}

impl Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn short_names_are_held_in_place_and_long_ones_boxed() {
        assert_eq!(std::mem::size_of::<Name>(), 24);
        assert_eq!(std::mem::size_of::<Option<Name>>(), 24);
        let fits = "a".repeat(INLINE);
        for text in ["", "web", "scale-1234-lab", fits.as_str(), "é-ü-ñ-ø"] {
            assert!(matches!(Name::from(text).0, Form::Inline { .. }), "{text}");
        }
        let long = "a".repeat(INLINE + 1);
        assert!(matches!(Name::from(long.as_str()).0, Form::Boxed(_)));
    }

    proptest! {
        /// A name gives back its text, and is equal, hashed and found in a map as it.
        #[test]
        fn a_name_is_its_text(a in "\\PC{0,30}", b in "\\PC{0,30}") {
            let name = Name::from(a.as_str());
            prop_assert_eq!(name.as_str(), a.as_str());
            prop_assert_eq!(name.to_string(), a.clone());
            prop_assert_eq!(name == Name::from(b.as_str()), a == b);
            let map = HashMap::from([(name, 1)]);
            prop_assert_eq!(map.get(a.as_str()), Some(&1));
            prop_assert_eq!(map.contains_key(b.as_str()), a == b);
        }
    }
}
