//! Which network interfaces of the node L2 mode announces on.
//!
//! [`suitability`] is a pure decision over [`InterfaceInfo`];
//! [`list_interfaces`] is the thin shell that fills `InterfaceInfo` in from
//! `getifaddrs(3)` and sysfs.

// Raw libc socket and signal calls; each unsafe block says why it is sound.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::path::Path;

use regex::Regex;

use super::MacAddr;

/// Name patterns of interfaces that are not the node's uplink: container
/// veths, CNI bridges and tunnels, kube-proxy's dummy, loopback. Like
/// MetalLB's defaults. Interfaces are excluded by name only, never by driver:
/// a kind node's `eth0` is a veth and is exactly where L2 must answer.
pub const DEFAULT_EXCLUDE_PATTERNS: &[&str] = &[
    "^veth",
    "^docker",
    "^cali",
    "^cni",
    "^flannel",
    "^lxc",
    "^tunl",
    "^kube-ipvs",
    "^nodelocaldns",
    "^vxlan",
    "^cilium",
    "^virbr",
    "^dummy",
    "^lo$",
];

/// What we know about one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceInfo {
    pub name: String,
    pub index: u32,
    /// `IFF_UP`: administratively up.
    pub up: bool,
    /// `IFF_RUNNING`: operationally up (carrier). Sends fail without it.
    pub running: bool,
    pub broadcast: bool,
    pub loopback: bool,
    /// Enslaved to a bridge: the bridge device, not its port, owns the
    /// traffic, so a socket bound to the port would not see ARP requests.
    pub bridge_port: bool,
    /// The hardware address, for Ethernet-like interfaces.
    pub mac: Option<MacAddr>,
}

/// Interface name patterns (regular expressions) that rule an interface out.
#[derive(Clone, Debug)]
pub struct ExcludePatterns(Vec<Regex>);

#[derive(Debug, thiserror::Error)]
#[error("interface exclude pattern {pattern:?} is not a valid regular expression: {source}")]
pub struct BadExcludePattern {
    pub pattern: String,
    #[source]
    pub source: regex::Error,
}

impl ExcludePatterns {
    /// Compiles `patterns`, which replace the defaults entirely.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, BadExcludePattern> {
        patterns
            .iter()
            .map(|pattern| {
                Regex::new(pattern.as_ref()).map_err(|source| BadExcludePattern {
                    pattern: pattern.as_ref().to_owned(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(ExcludePatterns)
    }

    pub fn defaults() -> Self {
        // The defaults are literals tested below; a failure would be a bug here.
        Self::new(DEFAULT_EXCLUDE_PATTERNS).unwrap_or(ExcludePatterns(Vec::new()))
    }

    /// The first pattern that matches `name`, if any.
    pub fn matching(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|pattern| pattern.is_match(name))
            .map(Regex::as_str)
    }
}

impl Default for ExcludePatterns {
    fn default() -> Self {
        Self::defaults()
    }
}

/// Why an interface is not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unsuitable {
    Down,
    NoCarrier,
    Loopback,
    NoBroadcast,
    NoMacAddress,
    BridgePort,
    ExcludedByName { pattern: String },
}

/// Whether L2 mode may announce on `interface` when the user asked for every
/// suitable interface. Interfaces named explicitly skip only the name check:
/// see [`capability`].
pub fn suitability(interface: &InterfaceInfo, exclude: &ExcludePatterns) -> Result<(), Unsuitable> {
    capability(interface)?;
    match exclude.matching(&interface.name) {
        Some(pattern) => Err(Unsuitable::ExcludedByName {
            pattern: pattern.to_owned(),
        }),
        None => Ok(()),
    }
}

/// Whether ARP/NDP can work on `interface` at all, whatever its name.
pub fn capability(interface: &InterfaceInfo) -> Result<(), Unsuitable> {
    if interface.loopback {
        return Err(Unsuitable::Loopback);
    }
    if !interface.up {
        return Err(Unsuitable::Down);
    }
    if !interface.running {
        return Err(Unsuitable::NoCarrier);
    }
    if !interface.broadcast {
        return Err(Unsuitable::NoBroadcast);
    }
    match interface.mac {
        Some(mac) if !mac.is_zero() && !mac.is_multicast() => {}
        _ => return Err(Unsuitable::NoMacAddress),
    }
    if interface.bridge_port {
        return Err(Unsuitable::BridgePort);
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("listing network interfaces failed: {0}")]
pub struct ListInterfacesError(#[source] pub std::io::Error);

/// Lists the interfaces of the calling thread's network namespace.
///
/// The bridge-port check reads `/sys/class/net/<name>/brport`, which shows
/// the namespace sysfs was mounted in: right for a host-network pod.
pub fn list_interfaces() -> Result<Vec<InterfaceInfo>, ListInterfacesError> {
    let mut by_name: BTreeMap<String, InterfaceInfo> = BTreeMap::new();
    for entry in ifaddrs()? {
        let info = by_name
            .entry(entry.name.clone())
            .or_insert_with(|| InterfaceInfo {
                name: entry.name.clone(),
                index: 0,
                up: entry.flags & libc::IFF_UP as u32 != 0,
                running: entry.flags & libc::IFF_RUNNING as u32 != 0,
                broadcast: entry.flags & libc::IFF_BROADCAST as u32 != 0,
                loopback: entry.flags & libc::IFF_LOOPBACK as u32 != 0,
                bridge_port: Path::new("/sys/class/net")
                    .join(&entry.name)
                    .join("brport")
                    .exists(),
                mac: None,
            });
        if let Some(link) = entry.link {
            info.index = link.index;
            info.mac = link.mac;
        }
    }
    // Interfaces without a link-layer entry have no index from getifaddrs.
    Ok(by_name
        .into_values()
        .filter(|info| info.index != 0)
        .collect())
}

struct IfaddrEntry {
    name: String,
    flags: u32,
    link: Option<LinkEntry>,
}

struct LinkEntry {
    index: u32,
    mac: Option<MacAddr>,
}

/// Copies what we need out of `getifaddrs`, so no raw pointer outlives this function.
fn ifaddrs() -> Result<Vec<IfaddrEntry>, ListInterfacesError> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head into `head`, freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(ListInterfacesError(std::io::Error::last_os_error()));
    }
    let mut entries = Vec::new();
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a non-null node of the list getifaddrs returned,
        // which stays valid until freeifaddrs.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        if entry.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(entry.ifa_name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: ifa_addr is null or points at a sockaddr whose family says
        // its real type; AF_PACKET entries are sockaddr_ll.
        let link = unsafe { entry.ifa_addr.as_ref() }
            .filter(|address| i32::from(address.sa_family) == libc::AF_PACKET)
            .map(|address| {
                // SAFETY: see above: the family is AF_PACKET.
                let link =
                    unsafe { &*(address as *const libc::sockaddr as *const libc::sockaddr_ll) };
                let mac = (link.sll_halen == 6)
                    .then(|| MacAddr::from_slice(&link.sll_addr))
                    .flatten();
                LinkEntry {
                    index: u32::try_from(link.sll_ifindex).unwrap_or(0),
                    mac,
                }
            });
        entries.push(IfaddrEntry {
            name,
            flags: entry.ifa_flags,
            link,
        });
    }
    // SAFETY: `head` came from getifaddrs and nothing borrowed from it is kept.
    unsafe { libc::freeifaddrs(head) };
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uplink(name: &str) -> InterfaceInfo {
        InterfaceInfo {
            name: name.to_owned(),
            index: 2,
            up: true,
            running: true,
            broadcast: true,
            loopback: false,
            bridge_port: false,
            mac: Some(MacAddr([0x02, 0x42, 0xac, 0x12, 0x00, 0x02])),
        }
    }

    #[test]
    fn an_ordinary_uplink_is_suitable() {
        let defaults = ExcludePatterns::defaults();
        for name in [
            "eth0",
            "ens3",
            "enp0s31f6",
            "bond0",
            "br0",
            "lan0",
            "eth0.100",
        ] {
            assert_eq!(suitability(&uplink(name), &defaults), Ok(()), "{name}");
        }
    }

    #[test]
    fn default_patterns_exclude_container_and_overlay_interfaces_by_name() {
        let defaults = ExcludePatterns::defaults();
        for (name, pattern) in [
            ("veth1234abcd", "^veth"),
            ("docker0", "^docker"),
            ("cali12345", "^cali"),
            ("cni0", "^cni"),
            ("flannel.1", "^flannel"),
            ("lxc0af1", "^lxc"),
            ("tunl0", "^tunl"),
            ("kube-ipvs0", "^kube-ipvs"),
            ("nodelocaldns", "^nodelocaldns"),
            ("vxlan.calico", "^vxlan"),
            ("cilium_host", "^cilium"),
            ("virbr0", "^virbr"),
            ("dummy0", "^dummy"),
        ] {
            assert_eq!(
                suitability(&uplink(name), &defaults),
                Err(Unsuitable::ExcludedByName {
                    pattern: pattern.to_owned()
                }),
                "{name}"
            );
        }
    }

    #[test]
    fn patterns_are_anchored_as_written() {
        let defaults = ExcludePatterns::defaults();
        // "^lo$" rules out lo but not an uplink that merely starts with "lo".
        assert_eq!(defaults.matching("lo"), Some("^lo$"));
        assert_eq!(defaults.matching("lo1"), None);
        // Only the prefix counts: an interface named "myveth0" is fine.
        assert_eq!(defaults.matching("myveth0"), None);
    }

    #[test]
    fn user_patterns_replace_the_defaults() {
        let only_eth1 = ExcludePatterns::new(&["^eth1$"]).unwrap();
        assert_eq!(suitability(&uplink("veth0"), &only_eth1), Ok(()));
        assert!(suitability(&uplink("eth1"), &only_eth1).is_err());
        let none = ExcludePatterns::new::<&str>(&[]).unwrap();
        assert_eq!(suitability(&uplink("docker0"), &none), Ok(()));
    }

    #[test]
    fn a_bad_pattern_is_reported_with_its_text() {
        let error = ExcludePatterns::new(&["^eth(", "^ok"]).unwrap_err();
        assert_eq!(error.pattern, "^eth(");
    }

    #[test]
    fn capability_rules_out_what_cannot_carry_arp() {
        let defaults = ExcludePatterns::defaults();
        let check = |change: fn(&mut InterfaceInfo)| {
            let mut info = uplink("eth0");
            change(&mut info);
            suitability(&info, &defaults)
        };
        assert_eq!(check(|i| i.up = false), Err(Unsuitable::Down));
        assert_eq!(check(|i| i.running = false), Err(Unsuitable::NoCarrier));
        assert_eq!(check(|i| i.loopback = true), Err(Unsuitable::Loopback));
        assert_eq!(check(|i| i.broadcast = false), Err(Unsuitable::NoBroadcast));
        assert_eq!(check(|i| i.mac = None), Err(Unsuitable::NoMacAddress));
        assert_eq!(
            check(|i| i.mac = Some(MacAddr::ZERO)),
            Err(Unsuitable::NoMacAddress)
        );
        assert_eq!(check(|i| i.bridge_port = true), Err(Unsuitable::BridgePort));
    }

    #[test]
    fn explicitly_named_interfaces_skip_only_the_name_check() {
        assert_eq!(capability(&uplink("veth0")), Ok(()));
        let mut port = uplink("veth0");
        port.bridge_port = true;
        assert_eq!(capability(&port), Err(Unsuitable::BridgePort));
    }

    #[test]
    fn listing_finds_loopback_with_an_index() {
        // Every network namespace has lo; this exercises the getifaddrs walk.
        let interfaces = list_interfaces().unwrap();
        let lo = interfaces
            .iter()
            .find(|i| i.name == "lo")
            .expect("lo is listed");
        assert!(lo.loopback);
        assert!(lo.index > 0);
        assert_eq!(
            suitability(lo, &ExcludePatterns::defaults()),
            Err(Unsuitable::Loopback)
        );
    }
}
