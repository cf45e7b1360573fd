//! What a Service asks of us: read from its spec and annotations, with every
//! malformed input turned into a named error rather than a panic.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;

use super::labels::Labels;
use crate::ipam::Family;

/// Our annotation prefix; the MetalLB spellings are read too.
pub const PREFIX: &str = "ferrolb.io/";
const LEGACY_PREFIXES: [&str; 2] = ["metallb.io/", "metallb.universe.tf/"];

/// Annotation (after a prefix) naming the pool to allocate from.
pub const ANNOTATION_ADDRESS_POOL: &str = "address-pool";
/// Annotation (after a prefix) requesting IPs, comma-separated, at most one per family.
pub const ANNOTATION_LOAD_BALANCER_IPS: &str = "loadBalancerIPs";
/// Annotation (after a prefix) whose value is the sharing key: Services with equal keys may share an IP.
pub const ANNOTATION_ALLOW_SHARED_IP: &str = "allow-shared-ip";
/// Written by us: the pool the Service's IPs came from.
pub const ANNOTATION_ALLOCATED_FROM_POOL: &str = "ferrolb.io/ip-allocated-from-pool";

pub use ferrolb_crds::service_key::ServiceKey;

/// A protocol/port pair, the unit of conflict between Services sharing an IP.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortKey {
    /// `TCP`, `UDP` or `SCTP`, as in the Service port.
    pub protocol: String,
    /// The Service port number.
    pub port: i32,
}

impl fmt::Display for PortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol)
    }
}

/// What a Service must agree on with the others that share its IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharingTerms {
    /// The `allow-shared-ip` value; only Services with equal keys share.
    pub key: String,
    /// The Service's ports; sharing Services must not use the same one.
    pub ports: BTreeSet<PortKey>,
    /// `externalTrafficPolicy: Local`; then sharing Services must have the same selector.
    pub local_traffic_policy: bool,
    /// The Service's pod selector.
    pub selector: Labels,
}

/// The families a Service needs, in its preference order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyNeeds {
    /// Families from `spec.ipFamilies`, preferred first.
    pub families: Vec<Family>,
    /// RequireDualStack: every family must be served. Otherwise (SingleStack has
    /// one family; PreferDualStack takes what the pool offers) one is enough.
    pub all_required: bool,
}

/// A LoadBalancer Service we are responsible for, reduced to what allocation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRequest {
    /// The Service.
    pub key: ServiceKey,
    /// The Service's labels, matched by pools' service selectors.
    pub labels: Labels,
    /// Which families it needs.
    pub needs: FamilyNeeds,
    /// Explicitly requested IPs, at most one per family.
    pub requested_ips: Vec<IpAddr>,
    /// The pool named by the address-pool annotation.
    pub requested_pool: Option<String>,
    /// Set when the Service agrees to share its IP; boxed, as most do not
    /// (80 bytes in every request and every IP's users otherwise).
    pub sharing: Option<Box<SharingTerms>>,
    /// IPs in `status.loadBalancer.ingress` now: kept when still valid, so an IP
    /// survives controller restarts.
    pub current_ips: Vec<IpAddr>,
    /// The pool we recorded last time, a tie-breaker when rebuilding.
    pub recorded_pool: Option<String>,
    /// Legacy annotation spellings in use (for a Warning Event).
    pub legacy_annotations: Vec<String>,
}

/// Why a Service's request cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A requested IP does not parse.
    #[error("annotation {annotation}: {value:?} is not an IP address")]
    InvalidIp {
        /// The annotation (or spec field) it came from.
        annotation: String,
        /// The text that is not an IP.
        value: String,
    },
    /// Two requested IPs of the same family.
    #[error("annotation {annotation}: at most one IP per family, got {first} and {second}")]
    TwoIpsOfOneFamily {
        /// The annotation (or spec field) they came from.
        annotation: String,
        /// The first IP of the family.
        first: IpAddr,
        /// The second one.
        second: IpAddr,
    },
    /// A requested IP of a family the Service does not use.
    #[error("requested IP {ip} is {family}, but the Service's ipFamilies are {allowed}")]
    WrongFamily {
        /// The requested IP.
        ip: IpAddr,
        /// Its family.
        family: Family,
        /// The Service's `ipFamilies`, as words.
        allowed: String,
    },
    /// A RequireDualStack Service requests IPs but not one of each family.
    #[error(
        "the Service is RequireDualStack but requests only {requested}: request one IP per family"
    )]
    DualStackNeedsBothIps {
        /// The IPs it requests, as words.
        requested: String,
    },
    /// `spec.loadBalancerIP` and the loadBalancerIPs annotation request different IPs.
    #[error("spec.loadBalancerIP {spec} and annotation {annotation} ({value}) disagree")]
    ConflictingRequests {
        /// `spec.loadBalancerIP`, as written.
        spec: String,
        /// The annotation's full name.
        annotation: String,
        /// The annotation's value.
        value: String,
    },
    /// An annotation we read is present but empty.
    #[error("annotation {annotation} is empty")]
    EmptyAnnotation {
        /// The annotation's full name.
        annotation: String,
    },
}

impl RequestError {
    /// Short reason for Events and metrics.
    pub fn reason(&self) -> &'static str {
        "invalid_request"
    }
}

/// Reads annotation `name` under our prefix, or else a legacy one (noting which).
fn annotation<'a>(
    service: &'a Service,
    name: &str,
    legacy_used: &mut Vec<String>,
) -> Option<(String, &'a str)> {
    let annotations = service.metadata.annotations.as_ref()?;
    let ours = format!("{PREFIX}{name}");
    if let Some(value) = annotations.get(&ours) {
        return Some((ours, value.as_str()));
    }
    for prefix in LEGACY_PREFIXES {
        let legacy = format!("{prefix}{name}");
        if let Some(value) = annotations.get(&legacy) {
            legacy_used.push(legacy.clone());
            return Some((legacy, value.as_str()));
        }
    }
    None
}

fn parse_family(name: &str) -> Option<Family> {
    match name {
        "IPv4" => Some(Family::V4),
        "IPv6" => Some(Family::V6),
        _ => None,
    }
}

fn family_needs(service: &Service) -> FamilyNeeds {
    let spec = service.spec.as_ref();
    let mut families: Vec<Family> = spec
        .and_then(|s| s.ip_families.as_ref())
        .map(|f| f.iter().filter_map(|name| parse_family(name)).collect())
        .unwrap_or_default();
    if families.is_empty() {
        // Older servers may leave ipFamilies empty: infer from the ClusterIPs.
        families = spec
            .and_then(|s| s.cluster_ips.as_ref())
            .map(|ips| {
                ips.iter()
                    .filter_map(|ip| ip.parse::<IpAddr>().ok())
                    .map(|ip| Family::of(&ip))
                    .collect()
            })
            .unwrap_or_default();
    }
    families.dedup();
    if families.is_empty() {
        families.push(Family::V4);
    }
    let policy = spec
        .and_then(|s| s.ip_family_policy.as_deref())
        .unwrap_or("SingleStack");
    match policy {
        "RequireDualStack" => {
            if families.len() < 2 {
                let other = if families[0] == Family::V4 {
                    Family::V6
                } else {
                    Family::V4
                };
                families.push(other);
            }
            FamilyNeeds {
                families,
                all_required: true,
            }
        }
        "PreferDualStack" => FamilyNeeds {
            families,
            all_required: false,
        },
        _ => {
            families.truncate(1);
            FamilyNeeds {
                families,
                all_required: true,
            }
        }
    }
}

fn parse_requested_ips(
    service: &Service,
    legacy: &mut Vec<String>,
) -> Result<Vec<IpAddr>, RequestError> {
    let from_annotation = annotation(service, ANNOTATION_LOAD_BALANCER_IPS, legacy);
    let from_spec = service
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_ip.as_deref())
        .filter(|ip| !ip.is_empty());
    let (source, list) = match (&from_annotation, from_spec) {
        (Some((name, value)), Some(spec_ip)) => {
            if value.split(',').map(str::trim).any(|v| v == spec_ip) {
                (name.clone(), *value)
            } else {
                return Err(RequestError::ConflictingRequests {
                    spec: spec_ip.to_string(),
                    annotation: name.clone(),
                    value: value.to_string(),
                });
            }
        }
        (Some((name, value)), None) => (name.clone(), *value),
        (None, Some(spec_ip)) => ("spec.loadBalancerIP".to_string(), spec_ip),
        (None, None) => return Ok(Vec::new()),
    };
    if list.trim().is_empty() {
        return Err(RequestError::EmptyAnnotation { annotation: source });
    }
    let mut ips: Vec<IpAddr> = Vec::new();
    for value in list.split(',').map(str::trim) {
        let ip: IpAddr = value.parse().map_err(|_| RequestError::InvalidIp {
            annotation: source.clone(),
            value: value.to_string(),
        })?;
        if let Some(first) = ips
            .iter()
            .find(|other| Family::of(other) == Family::of(&ip))
        {
            return Err(RequestError::TwoIpsOfOneFamily {
                annotation: source,
                first: *first,
                second: ip,
            });
        }
        ips.push(ip);
    }
    Ok(ips)
}

/// The IPs in `status.loadBalancer.ingress`.
pub fn ingress_ips(service: &Service) -> Vec<IpAddr> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ingress| {
            let mut ips: Vec<IpAddr> = ingress
                .iter()
                .filter_map(|i| i.ip.as_deref()?.parse().ok())
                .collect();
            // Kept per Service (twice): room for four is 51 bytes wasted
            // on the usual one.
            ips.shrink_to_fit();
            ips
        })
        .unwrap_or_default()
}

/// Reads a Service we handle. Errors name the offending field or annotation.
pub fn read_request(service: &Service) -> Result<ServiceRequest, RequestError> {
    let mut legacy = Vec::new();
    let spec = service.spec.clone().unwrap_or_default();
    let needs = family_needs(service);
    let requested_ips = parse_requested_ips(service, &mut legacy)?;
    for ip in &requested_ips {
        if !needs.families.contains(&Family::of(ip)) {
            return Err(RequestError::WrongFamily {
                ip: *ip,
                family: Family::of(ip),
                allowed: needs
                    .families
                    .iter()
                    .map(|f| f.k8s_name())
                    .collect::<Vec<_>>()
                    .join(","),
            });
        }
    }
    if needs.all_required && needs.families.len() > 1 && requested_ips.len() == 1 {
        return Err(RequestError::DualStackNeedsBothIps {
            requested: requested_ips[0].to_string(),
        });
    }
    let requested_pool = match annotation(service, ANNOTATION_ADDRESS_POOL, &mut legacy) {
        Some((name, value)) if value.trim().is_empty() => {
            return Err(RequestError::EmptyAnnotation { annotation: name });
        }
        Some((_, value)) => Some(value.trim().to_string()),
        None => None,
    };
    let sharing = match annotation(service, ANNOTATION_ALLOW_SHARED_IP, &mut legacy) {
        Some((name, value)) if value.trim().is_empty() => {
            return Err(RequestError::EmptyAnnotation { annotation: name });
        }
        Some((_, value)) => Some(Box::new(SharingTerms {
            key: value.trim().to_string(),
            ports: spec
                .ports
                .iter()
                .flatten()
                .map(|p| PortKey {
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    port: p.port,
                })
                .collect(),
            local_traffic_policy: spec.external_traffic_policy.as_deref() == Some("Local"),
            selector: spec.selector.clone().unwrap_or_default(),
        })),
        None => None,
    };
    let recorded_pool = service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_ALLOCATED_FROM_POOL))
        .cloned();
    Ok(ServiceRequest {
        key: ServiceKey::of(service),
        labels: service.metadata.labels.clone().unwrap_or_default(),
        needs,
        requested_ips,
        requested_pool,
        sharing,
        current_ips: ingress_ips(service),
        recorded_pool,
        legacy_annotations: legacy,
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};

    use super::*;

    fn service(annotations: &[(&str, &str)], spec: ServiceSpec) -> Service {
        let mut service = crate::core::fixtures::service("web", 0, annotations);
        service.spec = Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            ..spec
        });
        service
    }

    fn v4_spec() -> ServiceSpec {
        ServiceSpec {
            ip_families: Some(vec!["IPv4".into()]),
            ..Default::default()
        }
    }

    #[test]
    fn reads_annotations_in_all_spellings() {
        let svc = service(
            &[
                ("metallb.universe.tf/address-pool", "gold"),
                ("ferrolb.io/loadBalancerIPs", "198.51.100.7"),
            ],
            v4_spec(),
        );
        let req = read_request(&svc).unwrap();
        assert_eq!(req.requested_pool.as_deref(), Some("gold"));
        assert_eq!(
            req.requested_ips,
            vec!["198.51.100.7".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            req.legacy_annotations,
            vec!["metallb.universe.tf/address-pool".to_string()]
        );
    }

    #[test]
    fn bad_annotations_are_named_errors() {
        let garbage = service(&[("ferrolb.io/loadBalancerIPs", "not-an-ip")], v4_spec());
        assert!(matches!(
            read_request(&garbage),
            Err(RequestError::InvalidIp { .. })
        ));
        let wrong_family = service(&[("ferrolb.io/loadBalancerIPs", "2001:db8::1")], v4_spec());
        assert!(matches!(
            read_request(&wrong_family),
            Err(RequestError::WrongFamily { .. })
        ));
        let two = service(
            &[("metallb.io/loadBalancerIPs", "198.51.100.1,198.51.100.2")],
            v4_spec(),
        );
        assert!(matches!(
            read_request(&two),
            Err(RequestError::TwoIpsOfOneFamily { .. })
        ));
        let empty = service(&[("ferrolb.io/address-pool", " ")], v4_spec());
        assert!(matches!(
            read_request(&empty),
            Err(RequestError::EmptyAnnotation { .. })
        ));
        let conflicting = service(
            &[("ferrolb.io/loadBalancerIPs", "198.51.100.1")],
            ServiceSpec {
                load_balancer_ip: Some("198.51.100.2".into()),
                ..v4_spec()
            },
        );
        assert!(matches!(
            read_request(&conflicting),
            Err(RequestError::ConflictingRequests { .. })
        ));
    }

    #[test]
    fn family_policies() {
        let dual = ServiceSpec {
            ip_family_policy: Some("RequireDualStack".into()),
            ip_families: Some(vec!["IPv6".into(), "IPv4".into()]),
            ..Default::default()
        };
        let req = read_request(&service(&[], dual.clone())).unwrap();
        assert_eq!(
            req.needs,
            FamilyNeeds {
                families: vec![Family::V6, Family::V4],
                all_required: true
            }
        );
        let one = service(&[("ferrolb.io/loadBalancerIPs", "2001:db8::5")], dual);
        assert!(matches!(
            read_request(&one),
            Err(RequestError::DualStackNeedsBothIps { .. })
        ));
        let prefer = ServiceSpec {
            ip_family_policy: Some("PreferDualStack".into()),
            ip_families: Some(vec!["IPv4".into()]),
            ..Default::default()
        };
        assert!(
            !read_request(&service(&[], prefer))
                .unwrap()
                .needs
                .all_required
        );
        let inferred = ServiceSpec {
            cluster_ips: Some(vec!["2001:db8:ffff::9".into()]),
            ..Default::default()
        };
        assert_eq!(
            read_request(&service(&[], inferred))
                .unwrap()
                .needs
                .families,
            vec![Family::V6]
        );
    }

    #[test]
    fn sharing_terms() {
        let spec = ServiceSpec {
            ports: Some(vec![
                ServicePort {
                    port: 80,
                    ..Default::default()
                },
                ServicePort {
                    port: 53,
                    protocol: Some("UDP".into()),
                    ..Default::default()
                },
            ]),
            external_traffic_policy: Some("Local".into()),
            ..v4_spec()
        };
        let req = read_request(&service(&[("ferrolb.io/allow-shared-ip", "k1")], spec)).unwrap();
        let terms = req.sharing.unwrap();
        assert_eq!(terms.key, "k1");
        assert!(terms.local_traffic_policy);
        assert_eq!(terms.ports.len(), 2);
    }
}
