//! [`AddressSet`]: a set of addresses of both families, as few ranges as possible.

use std::cmp::Ordering;
use std::net::IpAddr;

use ferrolb_crds::address::{AddressError, Family, IpRange, from_u128, to_u128};

/// A set of addresses: sorted, disjoint, merged (adjacent ranges coalesced)
/// inclusive ranges, IPv4 before IPv6.
///
/// Because the form is canonical, two sets are equal exactly when they hold
/// the same addresses, and the derived `PartialEq` compares sets. Every
/// operation is linear in the number of *ranges*, never in the number of
/// addresses, so `::/0` costs the same as a /30.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AddressSet {
    ranges: Vec<IpRange>,
}

/// A range as integers, the form in which arithmetic is done. Ordering by
/// `(family, start)` matches the order of [`IpAddr`] (IPv4 sorts first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) family: Family,
    pub(crate) start: u128,
    pub(crate) end: u128,
}

impl Span {
    pub(crate) fn of(range: &IpRange) -> Span {
        Span {
            family: range.family(),
            start: to_u128(&range.start()),
            end: to_u128(&range.end()),
        }
    }

    /// Number of addresses, saturating at `u128::MAX` (only `::/0` saturates).
    pub(crate) fn len(&self) -> u128 {
        (self.end - self.start).saturating_add(1)
    }

    /// Back to an [`IpRange`]. Spans are only ever built from the bounds of
    /// existing ranges (plus or minus one, staying inside them), so this does
    /// not fail; `None` would mean a bug here, never bad input.
    fn to_range(self) -> Option<IpRange> {
        let range = from_u128(self.family, self.start)
            .zip(from_u128(self.family, self.end))
            .and_then(|(start, end)| IpRange::new(start, end));
        debug_assert!(range.is_some(), "malformed span {self:?}");
        range
    }
}

/// Compares `(family, value)` positions across families: IPv4 before IPv6.
fn position(family: Family, value: u128) -> (Family, u128) {
    (family, value)
}

/// Accumulates spans given in ascending order of start, merging overlapping
/// and adjacent ones, into the canonical form.
#[derive(Default)]
struct Builder {
    spans: Vec<Span>,
}

impl Builder {
    fn push(&mut self, span: Span) {
        debug_assert!(span.start <= span.end);
        if let Some(last) = self.spans.last_mut()
            && last.family == span.family
            // Saturation is right: a span ending at the top of the space
            // absorbs everything after it.
            && span.start <= last.end.saturating_add(1)
        {
            debug_assert!(span.start >= last.start, "spans pushed out of order");
            last.end = last.end.max(span.end);
            return;
        }
        self.spans.push(span);
    }

    fn finish(self) -> AddressSet {
        AddressSet {
            ranges: self.spans.into_iter().filter_map(Span::to_range).collect(),
        }
    }
}

impl AddressSet {
    /// The set of all addresses in `ranges`, which may overlap, touch, come
    /// in any order and mix families. `O(r log r)`.
    pub fn new(ranges: impl IntoIterator<Item = IpRange>) -> AddressSet {
        let mut spans: Vec<Span> = ranges.into_iter().map(|r| Span::of(&r)).collect();
        spans.sort_unstable_by_key(|s| (s.family, s.start, s.end));
        let mut builder = Builder::default();
        for span in spans {
            builder.push(span);
        }
        builder.finish()
    }

    /// Parses the `addresses` entries of an IPAddressPool into a set.
    pub fn parse<S: AsRef<str>>(
        entries: impl IntoIterator<Item = S>,
    ) -> Result<AddressSet, AddressError> {
        let ranges = entries
            .into_iter()
            .map(|e| IpRange::parse(e.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AddressSet::new(ranges))
    }

    /// The canonical ranges: sorted (IPv4 first), disjoint, never adjacent.
    pub fn ranges(&self) -> &[IpRange] {
        &self.ranges
    }

    /// The ranges of one family, in ascending order.
    pub fn ranges_of(&self, family: Family) -> impl Iterator<Item = &IpRange> + '_ {
        self.ranges.iter().filter(move |r| r.family() == family)
    }

    pub(crate) fn spans(&self) -> impl Iterator<Item = Span> + '_ {
        self.ranges.iter().map(Span::of)
    }

    pub(crate) fn spans_of(&self, family: Family) -> impl Iterator<Item = Span> + '_ {
        self.ranges_of(family).map(Span::of)
    }

    /// Whether `ip` is in the set. `O(log r)` by binary search: ranges are
    /// sorted and disjoint, so their ends are sorted too.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let key = position(Family::of(&ip), to_u128(&ip));
        let index = self.ranges.partition_point(|r| {
            let span = Span::of(r);
            position(span.family, span.end) < key
        });
        self.ranges.get(index).is_some_and(|r| r.contains(&ip))
    }

    /// Number of addresses of `family`, saturating at `u128::MAX` (only a set
    /// holding all of `::/0` saturates, being one short of 2^128).
    pub fn size(&self, family: Family) -> u128 {
        self.spans_of(family)
            .fold(0u128, |total, span| total.saturating_add(span.len()))
    }

    /// Whether the set holds at least one address of `family`.
    pub fn has_family(&self, family: Family) -> bool {
        self.ranges.iter().any(|r| r.family() == family)
    }

    /// Whether the set holds no address at all.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Addresses in either set. `O((a + b) log(a + b))`.
    pub fn union(&self, other: &AddressSet) -> AddressSet {
        AddressSet::new(self.ranges.iter().chain(other.ranges.iter()).copied())
    }

    /// Addresses in both sets. `O(a + b)`: a merge of two sorted lists.
    pub fn intersection(&self, other: &AddressSet) -> AddressSet {
        let (a, b) = (self.span_vec(), other.span_vec());
        let (mut i, mut j) = (0, 0);
        let mut builder = Builder::default();
        while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
            let low = position(x.family, x.start).max(position(y.family, y.start));
            let high = position(x.family, x.end).min(position(y.family, y.end));
            // `low <= high` implies one family: `low` has the larger family of
            // the two and `high` the smaller.
            if low <= high {
                builder.push(Span {
                    family: low.0,
                    start: low.1,
                    end: high.1,
                });
            }
            // Whichever ends first cannot meet anything further in the other.
            match position(x.family, x.end).cmp(&position(y.family, y.end)) {
                Ordering::Less => i += 1,
                Ordering::Greater => j += 1,
                Ordering::Equal => {
                    i += 1;
                    j += 1;
                }
            }
        }
        builder.finish()
    }

    /// Addresses of `self` that are not in `other`. `O(a + b)`.
    pub fn difference(&self, other: &AddressSet) -> AddressSet {
        let (a, b) = (self.span_vec(), other.span_vec());
        let mut builder = Builder::default();
        // First range of `other` that may still meet the current range of
        // `self`; it only moves forward, since `self` is sorted too.
        let mut first = 0;
        for x in &a {
            while b
                .get(first)
                .is_some_and(|y| position(y.family, y.end) < position(x.family, x.start))
            {
                first += 1;
            }
            // Lowest address of `x` neither emitted nor removed yet; `None`
            // once `x` is used up.
            let mut cursor = Some(x.start);
            for y in &b[first..] {
                let Some(at) = cursor else { break };
                if position(y.family, y.start) > position(x.family, x.end) {
                    break;
                }
                // Here `y` meets `x`, so it has the same family.
                if y.start > at {
                    builder.push(Span {
                        family: x.family,
                        start: at,
                        end: y.start - 1,
                    });
                }
                // `y.end < x.end` makes `y.end + 1` safe.
                cursor = (y.end < x.end).then(|| (y.end + 1).max(at));
            }
            if let Some(at) = cursor {
                builder.push(Span {
                    family: x.family,
                    start: at,
                    end: x.end,
                });
            }
        }
        builder.finish()
    }

    /// Whether the sets share at least one address. `O(a + b)`.
    pub fn overlaps(&self, other: &AddressSet) -> bool {
        let (a, b) = (self.span_vec(), other.span_vec());
        let (mut i, mut j) = (0, 0);
        while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
            let low = position(x.family, x.start).max(position(y.family, y.start));
            let high = position(x.family, x.end).min(position(y.family, y.end));
            if low <= high {
                return true;
            }
            if position(x.family, x.end) < position(y.family, y.end) {
                i += 1;
            } else {
                j += 1;
            }
        }
        false
    }

    fn span_vec(&self) -> Vec<Span> {
        self.spans().collect()
    }
}

impl FromIterator<IpRange> for AddressSet {
    fn from_iter<I: IntoIterator<Item = IpRange>>(iter: I) -> AddressSet {
        AddressSet::new(iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(entries: &[&str]) -> AddressSet {
        AddressSet::parse(entries).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn shown(s: &AddressSet) -> Vec<String> {
        s.ranges().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn new_merges_overlap_and_adjacency_but_not_families() {
        let s = set(&[
            "2001:db8::/127",
            "192.0.2.4/30",
            "192.0.2.0/30",
            "192.0.2.6-192.0.2.9",
            "198.51.100.1-198.51.100.1",
            "255.255.255.255/32",
            "::/128",
        ]);
        assert_eq!(
            shown(&s),
            vec![
                "192.0.2.0-192.0.2.9",
                "198.51.100.1",
                "255.255.255.255",
                "::",
                "2001:db8::-2001:db8::1"
            ]
        );
        assert_eq!(s.size(Family::V4), 12);
        assert_eq!(s.size(Family::V6), 3);
        assert!(s.contains(ip("192.0.2.9")));
        assert!(!s.contains(ip("192.0.2.10")));
        assert!(s.contains(ip("255.255.255.255")));
        assert!(s.contains(ip("::")));
        assert!(!s.contains(ip("::1")));
        assert!(s.contains(ip("2001:db8::1")));
        assert!(!s.contains(ip("2001:db8::2")));
        assert!(!s.contains(ip("0.0.0.0")));
    }

    #[test]
    fn sizes_of_huge_sets() {
        assert_eq!(set(&["::/0"]).size(Family::V6), u128::MAX);
        assert_eq!(set(&["::/0", "::/1"]).size(Family::V6), u128::MAX);
        assert_eq!(set(&["::/1", "8000::/1"]), set(&["::/0"]));
        assert_eq!(set(&["2001:db8::/48"]).size(Family::V6), 1 << 80);
        assert_eq!(set(&["0.0.0.0/0"]).size(Family::V4), 1 << 32);
        assert_eq!(set(&["0.0.0.0/0"]).size(Family::V6), 0);
        assert!(set(&["0.0.0.0/0"]).has_family(Family::V4));
        assert!(!set(&["0.0.0.0/0"]).has_family(Family::V6));
        assert!(AddressSet::default().is_empty());
    }

    #[test]
    fn intersection_difference_overlaps() {
        let a = set(&["192.0.2.0/24", "2001:db8::/64"]);
        let b = set(&["192.0.2.128/25", "192.0.2.10/32", "2001:db8::/48"]);
        assert_eq!(
            shown(&a.intersection(&b)),
            vec![
                "192.0.2.10",
                "192.0.2.128-192.0.2.255",
                "2001:db8::-2001:db8::ffff:ffff:ffff:ffff"
            ]
        );
        assert_eq!(
            shown(&a.difference(&b)),
            vec!["192.0.2.0-192.0.2.9", "192.0.2.11-192.0.2.127"]
        );
        assert!(a.overlaps(&b));
        assert!(!set(&["192.0.2.0/25"]).overlaps(&set(&["192.0.2.128/25", "2001:db8::/32"])));
        assert!(!set(&["0.0.0.0/0"]).overlaps(&set(&["::/0"])));
        assert!(set(&["0.0.0.0/0"]).intersection(&set(&["::/0"])).is_empty());
        assert_eq!(
            set(&["::/0"])
                .difference(&set(&[
                    "::/128",
                    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"
                ]))
                .size(Family::V6),
            u128::MAX - 1
        );
        assert!(set(&["::/0"]).difference(&set(&["::/0"])).is_empty());
        assert_eq!(
            set(&["0.0.0.0/0"]).difference(&set(&["::/0"])),
            set(&["0.0.0.0/0"])
        );
    }

    #[test]
    fn union_merges() {
        let u = set(&["192.0.2.0/25"]).union(&set(&["192.0.2.128/25", "2001:db8::/64"]));
        assert_eq!(u, set(&["192.0.2.0/24", "2001:db8::/64"]));
    }
}
