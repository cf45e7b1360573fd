//! The flags both binaries take, flattened into each one's own `Args`.

use ferrolb_crds::class::{ClassFilter, DEFAULT_LOAD_BALANCER_CLASS};

use crate::process::LogFormat;

/// Where `--help` lists `--log-format`: after each binary's own flags (clap
/// numbers those from 0 as they are declared), before `--help` and
/// `--version` (999).
const LOG_FORMAT_DISPLAY_ORDER: usize = 900;

/// Use with `#[command(flatten)]`.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Namespace holding FerroLB's objects: pools, advertisements, peers, the
    /// leader Lease, the gossip key Secret and the speakers' status objects.
    #[arg(long, env = "FERROLB_NAMESPACE", default_value = "ferrolb-system")]
    pub namespace: String,

    /// spec.loadBalancerClass served (the controller and its speakers must
    /// agree).
    #[arg(
        long,
        env = "FERROLB_LOAD_BALANCER_CLASS",
        default_value = DEFAULT_LOAD_BALANCER_CLASS
    )]
    pub load_balancer_class: String,

    /// Leave Services with no spec.loadBalancerClass alone (by default they are
    /// served, as the cluster's default load balancer).
    #[arg(long, env = "FERROLB_IGNORE_UNCLASSED")]
    pub ignore_unclassed: bool,

    /// Log format.
    #[arg(
        long,
        env = "FERROLB_LOG_FORMAT",
        value_enum,
        default_value = "text",
        display_order = LOG_FORMAT_DISPLAY_ORDER
    )]
    pub log_format: LogFormat,
}

impl CommonArgs {
    /// The Services these flags select.
    pub fn class_filter(&self) -> ClassFilter {
        ClassFilter::new(self.load_balancer_class.clone(), self.ignore_unclassed)
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Debug, Parser)]
    struct Binary {
        #[command(flatten)]
        common: CommonArgs,
    }

    fn parse(args: &[&str]) -> CommonArgs {
        let argv = std::iter::once("binary").chain(args.iter().copied());
        Binary::try_parse_from(argv)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .common
    }

    /// What a user types and sees: flag, env variable, default. Renaming any
    /// of these breaks manifests, charts and scripts.
    #[test]
    fn flags_env_and_defaults_are_pinned() {
        let command = Binary::command();
        let flags: Vec<String> = command
            .get_arguments()
            .map(|arg| {
                let env = arg
                    .get_env()
                    .map(|env| env.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let defaults: Vec<_> = arg
                    .get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect();
                format!(
                    "--{} {env} [{}]",
                    arg.get_long().unwrap_or_default(),
                    defaults.join(",")
                )
            })
            .collect();
        assert_eq!(
            flags,
            [
                "--namespace FERROLB_NAMESPACE [ferrolb-system]",
                "--load-balancer-class FERROLB_LOAD_BALANCER_CLASS [ferrolb.io/ferrolb]",
                "--ignore-unclassed FERROLB_IGNORE_UNCLASSED []",
                "--log-format FERROLB_LOG_FORMAT [text]",
            ]
        );
    }

    #[test]
    fn defaults_serve_our_class_and_unclassed_services() {
        let common = parse(&[]);
        assert_eq!(common.namespace, "ferrolb-system");
        assert_eq!(common.log_format, LogFormat::Text);
        assert_eq!(common.class_filter(), ClassFilter::default());
    }

    #[test]
    fn flags_reach_the_class_filter() {
        let common = parse(&[
            "--namespace",
            "lb",
            "--load-balancer-class",
            "example.com/lb",
            "--ignore-unclassed",
            "--log-format",
            "json",
        ]);
        assert_eq!(common.namespace, "lb");
        assert_eq!(common.log_format, LogFormat::Json);
        assert_eq!(
            common.class_filter(),
            ClassFilter::new("example.com/lb", true)
        );
    }
}
