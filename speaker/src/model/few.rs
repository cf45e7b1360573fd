//! [`Few`]: a vector for the usual one value, holding it in place (no heap block of its
//! own), any other number in a vector with no spare room.

use std::fmt;

/// A few values, in the order given; one held in place.
#[derive(Clone)]
pub struct Few<T>(Form<T>);

/// Each number of values has one form: one in place, any other number in a vector.
#[derive(Clone)]
enum Form<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> Default for Few<T> {
    fn default() -> Self {
        Few(Form::Many(Vec::new()))
    }
}

impl<T: PartialEq> PartialEq for Few<T> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Eq> Eq for Few<T> {}

impl<T: fmt::Debug> fmt::Debug for Few<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_slice().fmt(f)
    }
}

impl<T> From<Vec<T>> for Few<T> {
    fn from(mut values: Vec<T>) -> Few<T> {
        match values.pop() {
            Some(one) if values.is_empty() => Few(Form::One(one)),
            Some(last) => {
                values.push(last);
                values.shrink_to_fit();
                Few(Form::Many(values))
            }
            None => Few::default(),
        }
    }
}

impl<T: Clone> From<&[T]> for Few<T> {
    fn from(values: &[T]) -> Few<T> {
        match values {
            [one] => Few::one(one.clone()),
            _ => Few(Form::Many(values.to_vec())),
        }
    }
}

impl<T> FromIterator<T> for Few<T> {
    fn from_iter<I: IntoIterator<Item = T>>(values: I) -> Few<T> {
        Few::from(values.into_iter().collect::<Vec<T>>())
    }
}

impl<'f, T> IntoIterator for &'f Few<T> {
    type Item = &'f T;
    type IntoIter = std::slice::Iter<'f, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl<T> Few<T> {
    /// Just `value`.
    pub fn one(value: T) -> Few<T> {
        Few(Form::One(value))
    }

    /// The values, in order.
    pub fn as_slice(&self) -> &[T] {
        match &self.0 {
            Form::One(one) => std::slice::from_ref(one),
            Form::Many(values) => values,
        }
    }

    /// Puts `value` at `at` (at most the length), growing by one place only.
    pub fn insert(&mut self, at: usize, value: T) {
        *self = match std::mem::take(self).0 {
            Form::Many(values) if values.is_empty() => Few::one(value),
            Form::Many(mut values) => {
                values.reserve_exact(1);
                values.insert(at, value);
                Few(Form::Many(values))
            }
            Form::One(one) => {
                let mut values = Vec::with_capacity(2);
                values.push(one);
                values.insert(at, value);
                Few(Form::Many(values))
            }
        }
    }

    /// Keeps the values `keep` keeps.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        match &mut self.0 {
            Form::One(one) => {
                if !keep(one) {
                    *self = Few::default();
                }
            }
            Form::Many(values) => {
                let before = values.len();
                values.retain(keep);
                if values.len() != before {
                    *self = Few::from(std::mem::take(values));
                }
            }
        }
    }

    /// The values, to change in place.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        match &mut self.0 {
            Form::One(one) => std::slice::from_mut(one),
            Form::Many(values) => values,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Whether `few` is in its one form: one value in place, any other number in a
    /// vector with no spare room.
    fn in_form<T>(few: &Few<T>) -> bool {
        match &few.0 {
            Form::One(_) => true,
            Form::Many(values) => values.len() != 1 && values.capacity() == values.len(),
        }
    }

    proptest! {
        /// Any inserts and removals leave what a vector would hold, in the one form.
        #[test]
        fn few_follows_a_vector(
            steps in prop::collection::vec((any::<bool>(), 0..4u8, any::<prop::sample::Index>()), 0..24),
        ) {
            let (mut few, mut model) = (Few::default(), Vec::new());
            for (insert, value, at) in steps {
                if insert {
                    let at = at.index(model.len() + 1);
                    few.insert(at, value);
                    model.insert(at, value);
                } else {
                    few.retain(|kept| *kept != value);
                    model.retain(|kept| *kept != value);
                }
                prop_assert_eq!(few.as_slice(), &model[..]);
                prop_assert!(in_form(&few), "{few:?}");
                prop_assert_eq!(few.is_empty(), model.is_empty());
                let collected: Few<u8> = model.iter().copied().collect();
                for made in [Few::from(model.clone()), Few::from(&model[..]), collected] {
                    prop_assert!(in_form(&made), "{made:?}");
                    prop_assert_eq!(&made, &few);
                }
            }
        }
    }
}
