//! Which Services this FerroLB instance announces: the same rule as the controller's, so
//! that the speaker announces exactly the Services whose IPs its controller assigned.

use k8s_openapi::api::core::v1::Service;

/// The controller's default `--load-balancer-class`.
pub const DEFAULT_LOAD_BALANCER_CLASS: &str = "ferrolb.io/ferrolb";

/// `type: LoadBalancer` Services whose `spec.loadBalancerClass` is `class`, or is unset
/// unless `ignore_unclassed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassFilter {
    pub class: String,
    pub ignore_unclassed: bool,
}

impl Default for ClassFilter {
    fn default() -> ClassFilter {
        ClassFilter {
            class: DEFAULT_LOAD_BALANCER_CLASS.to_string(),
            ignore_unclassed: false,
        }
    }
}

impl ClassFilter {
    /// Whether `service` is ours to announce. A Service being deleted is not: the
    /// controller lets go of its IPs at that point, and may hand them to another Service.
    pub fn accepts(&self, service: &Service) -> bool {
        let Some(spec) = &service.spec else {
            return false;
        };
        if service.metadata.deletion_timestamp.is_some()
            || spec.type_.as_deref() != Some("LoadBalancer")
        {
            return false;
        }
        match spec.load_balancer_class.as_deref() {
            None => !self.ignore_unclassed,
            Some(class) => class == self.class,
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ServiceSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

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

    #[test]
    fn takes_our_class_and_unclassed_by_default() {
        let filter = ClassFilter::default();
        assert!(filter.accepts(&service("LoadBalancer", Some("ferrolb.io/ferrolb"))));
        assert!(filter.accepts(&service("LoadBalancer", None)));
        assert!(!filter.accepts(&service("LoadBalancer", Some("other.io/lb"))));
        assert!(!filter.accepts(&service("ClusterIP", None)));
        assert!(!filter.accepts(&service("NodePort", Some("ferrolb.io/ferrolb"))));
        assert!(!filter.accepts(&Service::default()));
    }

    #[test]
    fn ignore_unclassed_leaves_unclassed_alone() {
        let filter = ClassFilter {
            class: "example.com/lb".into(),
            ignore_unclassed: true,
        };
        assert!(!filter.accepts(&service("LoadBalancer", None)));
        assert!(filter.accepts(&service("LoadBalancer", Some("example.com/lb"))));
        assert!(!filter.accepts(&service("LoadBalancer", Some("ferrolb.io/ferrolb"))));
    }

    #[test]
    fn skips_services_being_deleted() {
        let mut deleting = service("LoadBalancer", None);
        deleting.metadata.deletion_timestamp = Some(Time(Default::default()));
        assert!(!ClassFilter::default().accepts(&deleting));
    }
}
