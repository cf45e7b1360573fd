//! Which Services a FerroLB instance serves, read from `type` and
//! `spec.loadBalancerClass`. The controller and its speakers apply the same rule, so the
//! speakers announce exactly the Services whose IPs their controller assigned.

use k8s_openapi::api::core::v1::Service;

/// The `spec.loadBalancerClass` FerroLB serves unless told otherwise.
pub const DEFAULT_LOAD_BALANCER_CLASS: &str = "ferrolb.io/ferrolb";

/// What a FerroLB instance makes of a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// A LoadBalancer of our class.
    Ours,
    /// A LoadBalancer of another class (or unclassed, when we leave those
    /// alone): another FerroLB instance may own it, and its marks look
    /// exactly like ours.
    OtherClass,
    /// Not a LoadBalancer (any more), or being deleted.
    NotLoadBalancer,
}

impl Interest {
    /// Whether marks we find on the Service (our annotation, our condition)
    /// are ours to clear. Only a Service that is no LoadBalancer at all can
    /// carry no other instance's marks.
    pub fn may_clear_marks(self) -> bool {
        self == Interest::NotLoadBalancer
    }
}

/// `type: LoadBalancer` Services whose `spec.loadBalancerClass` is `class`, or is unset
/// unless `ignore_unclassed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassFilter {
    /// The class served.
    pub class: String,
    /// Leave Services without a class alone (by default they are served, as the
    /// cluster's default load balancer).
    pub ignore_unclassed: bool,
}

impl Default for ClassFilter {
    /// [`DEFAULT_LOAD_BALANCER_CLASS`], unclassed Services served.
    fn default() -> ClassFilter {
        ClassFilter::new(DEFAULT_LOAD_BALANCER_CLASS, false)
    }
}

impl ClassFilter {
    /// A filter serving Services of `class`; when `ignore_unclassed` is true, Services without a `loadBalancerClass` are left to other implementations.
    pub fn new(class: impl Into<String>, ignore_unclassed: bool) -> ClassFilter {
        ClassFilter {
            class: class.into(),
            ignore_unclassed,
        }
    }

    /// Whether a LoadBalancer with this `spec.loadBalancerClass` is ours.
    pub fn serves_class(&self, class: Option<&str>) -> bool {
        match class {
            None => !self.ignore_unclassed,
            Some(class) => class == self.class,
        }
    }

    /// What we make of `service`. A Service being deleted is no LoadBalancer to us: the
    /// controller lets go of its IPs at that point, and may hand them to another Service.
    pub fn interest(&self, service: &Service) -> Interest {
        let Some(spec) = &service.spec else {
            return Interest::NotLoadBalancer;
        };
        if service.metadata.deletion_timestamp.is_some()
            || spec.type_.as_deref() != Some("LoadBalancer")
        {
            return Interest::NotLoadBalancer;
        }
        if self.serves_class(spec.load_balancer_class.as_deref()) {
            Interest::Ours
        } else {
            Interest::OtherClass
        }
    }

    /// Whether `service` is ours to serve.
    pub fn accepts(&self, service: &Service) -> bool {
        self.interest(service) == Interest::Ours
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ServiceSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    const OURS: &str = "example.com/lb";

    fn service(type_: &str, class: Option<&str>) -> Service {
        Service {
            spec: Some(ServiceSpec {
                type_: Some(type_.into()),
                load_balancer_class: class.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn filter(ignore_unclassed: bool) -> ClassFilter {
        ClassFilter::new(OURS, ignore_unclassed)
    }

    #[test]
    fn our_class_is_ours_either_way() {
        for ignore_unclassed in [false, true] {
            let filter = filter(ignore_unclassed);
            assert_eq!(
                filter.interest(&service("LoadBalancer", Some(OURS))),
                Interest::Ours
            );
            assert!(filter.accepts(&service("LoadBalancer", Some(OURS))));
        }
    }

    #[test]
    fn another_class_is_left_to_its_owner() {
        for ignore_unclassed in [false, true] {
            let filter = filter(ignore_unclassed);
            let other = service("LoadBalancer", Some(DEFAULT_LOAD_BALANCER_CLASS));
            assert_eq!(filter.interest(&other), Interest::OtherClass);
            assert!(!filter.accepts(&other));
        }
    }

    #[test]
    fn no_class_is_ours_by_default() {
        let unclassed = service("LoadBalancer", None);
        assert_eq!(filter(false).interest(&unclassed), Interest::Ours);
        assert!(ClassFilter::default().accepts(&unclassed));
    }

    #[test]
    fn no_class_is_left_alone_with_ignore_unclassed() {
        let unclassed = service("LoadBalancer", None);
        assert_eq!(filter(true).interest(&unclassed), Interest::OtherClass);
        assert!(!filter(true).accepts(&unclassed));
    }

    #[test]
    fn default_serves_ferrolbs_class() {
        let filter = ClassFilter::default();
        assert_eq!(filter.class, "ferrolb.io/ferrolb");
        assert!(!filter.ignore_unclassed);
        assert!(filter.accepts(&service("LoadBalancer", Some("ferrolb.io/ferrolb"))));
    }

    #[test]
    fn other_types_and_deleted_services_are_no_load_balancers() {
        let filter = filter(false);
        for not_lb in [
            service("ClusterIP", None),
            service("NodePort", Some(OURS)),
            Service::default(),
        ] {
            assert_eq!(filter.interest(&not_lb), Interest::NotLoadBalancer);
        }
        let mut deleting = service("LoadBalancer", Some(OURS));
        deleting.metadata.deletion_timestamp = Some(Time(Default::default()));
        assert_eq!(filter.interest(&deleting), Interest::NotLoadBalancer);
    }

    #[test]
    fn only_non_load_balancers_may_lose_our_marks() {
        assert!(Interest::NotLoadBalancer.may_clear_marks());
        assert!(!Interest::OtherClass.may_clear_marks());
        assert!(!Interest::Ours.may_clear_marks());
    }
}
