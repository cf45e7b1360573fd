//! MetalLB's configuration kinds, in one place: what each is called on the API, which
//! versions MetalLB serves, whether it carries over, and where it goes in the orders the
//! tool writes objects in. Every `match` on [`MetallbKind`] is exhaustive, so a kind added
//! here is a compile error everywhere it must be handled.

/// A configuration kind of the `metallb.io` group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetallbKind {
    /// `IPAddressPool`.
    IpAddressPool,
    /// `L2Advertisement`.
    L2Advertisement,
    /// `BGPAdvertisement`.
    BgpAdvertisement,
    /// `BGPPeer` (v1beta1 and v1beta2).
    BgpPeer,
    /// `Community`.
    Community,
    /// `BFDProfile`: read, never converted.
    BfdProfile,
}

/// Kinds MetalLB writes itself (status, not configuration): skipped with a note.
const METALLB_STATUS_KINDS: [&str; 3] =
    ["ServiceL2Status", "ServiceBGPStatus", "ConfigurationState"];

/// What becomes of an input object of some kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// It has a FerroLB twin.
    Converts(MetallbKind),
    /// It does not carry over: a loss, with why.
    Lost(&'static str),
    /// It is not configuration: a note, with why.
    Skipped(&'static str),
}

impl MetallbKind {
    /// Every kind, in the order the live cluster is read.
    pub const ALL: [MetallbKind; 6] = [
        MetallbKind::IpAddressPool,
        MetallbKind::L2Advertisement,
        MetallbKind::BgpAdvertisement,
        MetallbKind::BgpPeer,
        MetallbKind::Community,
        MetallbKind::BfdProfile,
    ];

    /// The kind named `kind`, if it is one of MetalLB's configuration kinds.
    pub fn parse(kind: &str) -> Option<MetallbKind> {
        MetallbKind::ALL.into_iter().find(|k| k.name() == kind)
    }

    /// The `kind` field (FerroLB's twin has the same name).
    pub fn name(self) -> &'static str {
        match self {
            MetallbKind::IpAddressPool => "IPAddressPool",
            MetallbKind::L2Advertisement => "L2Advertisement",
            MetallbKind::BgpAdvertisement => "BGPAdvertisement",
            MetallbKind::BgpPeer => "BGPPeer",
            MetallbKind::Community => "Community",
            MetallbKind::BfdProfile => "BFDProfile",
        }
    }

    /// The resource's plural, for reading it from the cluster.
    pub fn plural(self) -> &'static str {
        match self {
            MetallbKind::IpAddressPool => "ipaddresspools",
            MetallbKind::L2Advertisement => "l2advertisements",
            MetallbKind::BgpAdvertisement => "bgpadvertisements",
            MetallbKind::BgpPeer => "bgppeers",
            MetallbKind::Community => "communities",
            MetallbKind::BfdProfile => "bfdprofiles",
        }
    }

    /// The versions MetalLB serves it in, newest first (a cluster may lack the newest).
    pub fn served_versions(self) -> &'static [&'static str] {
        match self {
            MetallbKind::BgpPeer => &["v1beta2", "v1beta1"],
            _ => &["v1beta1"],
        }
    }

    /// Where `configmaptocrs` puts objects made from the legacy ConfigMap: peers, pools,
    /// BGP advertisements, L2 advertisements, BFD profiles, communities.
    pub fn legacy_order(self) -> u8 {
        match self {
            MetallbKind::BgpPeer => 0,
            MetallbKind::IpAddressPool => 1,
            MetallbKind::BgpAdvertisement => 2,
            MetallbKind::L2Advertisement => 3,
            MetallbKind::BfdProfile => 4,
            MetallbKind::Community => 5,
        }
    }

    /// Where the converted twin goes in the output, so that `kubectl apply` creates what
    /// an object names before the object (Secrets come before all of these): communities
    /// (advertisements name them), pools, peers, then advertisements.
    pub fn apply_order(self) -> u8 {
        match self {
            MetallbKind::Community => 1,
            MetallbKind::IpAddressPool => 2,
            MetallbKind::BgpPeer => 3,
            MetallbKind::BgpAdvertisement => 4,
            MetallbKind::L2Advertisement | MetallbKind::BfdProfile => 5,
        }
    }
}

impl Disposition {
    /// What becomes of an object of `kind`.
    pub fn of(kind: &str) -> Disposition {
        match MetallbKind::parse(kind) {
            Some(MetallbKind::BfdProfile) => Disposition::Lost(
                "BFD is not supported: the profile is not converted (peers that use it are listed too)",
            ),
            Some(kind) => Disposition::Converts(kind),
            None if METALLB_STATUS_KINDS.contains(&kind) => Disposition::Skipped(
                "status written by MetalLB, not configuration: skipped (FerroLB writes its own)",
            ),
            None => Disposition::Lost("not a MetalLB kind this tool knows: not converted"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_back_from_its_name() {
        for kind in MetallbKind::ALL {
            assert_eq!(MetallbKind::parse(kind.name()), Some(kind));
        }
        assert_eq!(MetallbKind::parse("Secret"), None);
    }

    #[test]
    fn orders_are_total_over_the_kinds() {
        let mut legacy: Vec<u8> = MetallbKind::ALL.iter().map(|k| k.legacy_order()).collect();
        legacy.sort_unstable();
        legacy.dedup();
        assert_eq!(legacy.len(), MetallbKind::ALL.len(), "legacy order ties");
        // Secrets are applied first (0): no kind may share that slot.
        assert!(MetallbKind::ALL.iter().all(|k| k.apply_order() > 0));
    }

    #[test]
    fn dispositions() {
        assert_eq!(
            Disposition::of("BGPPeer"),
            Disposition::Converts(MetallbKind::BgpPeer)
        );
        assert!(matches!(
            Disposition::of("BFDProfile"),
            Disposition::Lost(_)
        ));
        assert!(matches!(
            Disposition::of("ServiceL2Status"),
            Disposition::Skipped(_)
        ));
        assert!(matches!(
            Disposition::of("Frobnicator"),
            Disposition::Lost(_)
        ));
    }
}
