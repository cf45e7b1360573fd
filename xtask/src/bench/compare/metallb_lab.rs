//! MetalLB's side of a lab shared with FerroLB (the L2 and the BGP comparisons): its
//! controller, its speakers' Pods and memberlist key, and which project's speakers run.

use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use anyhow::Result;

use ferrolb_tests::l2lab::L2Lab;
use ferrolb_tests::metallb;
use ferrolb_tests::metallb_source::speaker_binary;
use ferrolb_tests::process::terminate;

use super::Project;

/// MetalLB installed next to FerroLB in a lab.
pub(super) struct MetalLbSide {
    controller: Child,
    secret_dir: PathBuf,
    speaker: PathBuf,
}

impl MetalLbSide {
    /// Its namespace, CRDs and `config` (its pools and advertisements, in
    /// [`metallb::NAMESPACE`]), a speaker Pod for every node of `lab`, the memberlist key
    /// (the lab's gossip key), and its controller; its speaker binary is built or taken
    /// from the cache.
    pub(super) fn install(lab: &L2Lab, config: &str) -> Result<MetalLbSide> {
        let cluster = lab.scenario.cluster;
        cluster.kubectl_stdin(
            &["apply", "-f", "-"],
            &format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {}}}\n",
                metallb::NAMESPACE
            ),
        )?;
        metallb::install_crds(cluster)?;
        cluster.kubectl_stdin(&["apply", "-f", "-"], config)?;
        for node in &lab.nodes {
            metallb::register_speaker_pod(cluster, &node.name, node.ip4.into())?;
        }
        let secret_dir = metallb::write_memberlist_secret(cluster, &lab.gossip_key)?;
        let speaker = speaker_binary()?;
        Ok(MetalLbSide {
            controller: metallb::start_controller(cluster)?,
            secret_dir,
            speaker,
        })
    }

    /// Starts `project`'s speaker on node `i` of `lab`.
    pub(super) fn start_speaker(&self, lab: &mut L2Lab, project: Project, i: usize) -> Result<()> {
        match project {
            Project::FerroLB => lab.start_speaker(i),
            Project::MetalLB => {
                let node = &lab.nodes[i];
                let command = metallb::speaker_command(
                    lab.scenario.cluster,
                    node.netns.command(&self.speaker),
                    &node.name,
                    node.ip4.into(),
                    &self.secret_dir,
                );
                lab.start_speaker_command(i, command)
            }
        }
    }

    /// Stops every speaker of `lab`, then starts `project`'s on every node.
    pub(super) fn switch_speakers(&self, lab: &mut L2Lab, project: Project) -> Result<()> {
        stop_speakers(lab);
        for i in 0..lab.nodes.len() {
            self.start_speaker(lab, project, i)?;
        }
        Ok(())
    }

    /// Stops every speaker of `lab`, then MetalLB's controller.
    pub(super) fn stop(mut self, lab: &mut L2Lab) {
        stop_speakers(lab);
        terminate(&mut self.controller, Duration::from_secs(10));
    }
}

fn stop_speakers(lab: &mut L2Lab) {
    for i in 0..lab.nodes.len() {
        lab.stop_speaker(i);
    }
}
