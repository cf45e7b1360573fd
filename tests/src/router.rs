//! Real BGP routers for the end-to-end tests: BIRD 2 (installing ECMP routes
//! into its namespace's kernel table) and GoBGP, each in a namespace the test
//! made.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::netns::{Netns, run};
use crate::process::{spawn_detached, spawn_tied, terminate};

/// A BGP neighbor as a router sees it.
pub struct Neighbor {
    pub name: String,
    pub address: IpAddr,
    pub asn: u32,
    /// TCP MD5 password, if any.
    pub password: Option<String>,
}

/// A running BIRD 2 in a namespace.
pub struct Bird {
    child: Option<Child>,
    pub socket: PathBuf,
    pub config: PathBuf,
    netns_name: String,
}

impl Bird {
    /// Writes the config of [`bird_config`] and starts BIRD in the foreground
    /// inside `netns`, stopped when the handle is dropped.
    pub fn start(
        netns: &Netns,
        dir: &std::path::Path,
        asn: u32,
        router_id: &str,
        neighbors: &[Neighbor],
    ) -> Result<Bird> {
        let (command, log, mut bird) = Bird::prepare(netns, dir, asn, router_id, neighbors)?;
        bird.child = Some(spawn_tied(command, &log)?);
        wait_started("BIRD", netns, &log, || {
            bird.birdc(&["show", "status"]).is_ok()
        })?;
        Ok(bird)
    }

    /// Like [`Bird::start`], but BIRD outlives this process (`cargo xtask lab`):
    /// the handle does not stop it on drop. Returns the handle and BIRD's pid.
    pub fn start_detached(
        netns: &Netns,
        dir: &std::path::Path,
        asn: u32,
        router_id: &str,
        neighbors: &[Neighbor],
    ) -> Result<(Bird, u32)> {
        let (command, log, bird) = Bird::prepare(netns, dir, asn, router_id, neighbors)?;
        let pid = spawn_detached(command, &log)?;
        wait_started("BIRD", netns, &log, || {
            bird.birdc(&["show", "status"]).is_ok()
        })?;
        Ok((bird, pid))
    }

    /// Writes the config and returns the command to run, its log, and a
    /// handle with no process yet.
    fn prepare(
        netns: &Netns,
        dir: &std::path::Path,
        asn: u32,
        router_id: &str,
        neighbors: &[Neighbor],
    ) -> Result<(Command, PathBuf, Bird)> {
        let config_path = dir.join(format!("bird-{}.conf", netns.name));
        std::fs::write(&config_path, bird_config(asn, router_id, neighbors))?;
        let socket = dir.join(format!("bird-{}.ctl", netns.name));
        let log = dir.join(format!("bird-{}.log", netns.name));
        let mut command = netns.command("bird");
        command
            .arg("-f")
            .arg("-c")
            .arg(&config_path)
            .arg("-s")
            .arg(&socket);
        let bird = Bird {
            child: None,
            socket,
            config: config_path,
            netns_name: netns.name.clone(),
        };
        Ok((command, log, bird))
    }

    /// Runs `birdc` against this BIRD.
    pub fn birdc(&self, args: &[&str]) -> Result<String> {
        run(Command::new("birdc").arg("-s").arg(&self.socket).args(args))
    }

    /// BGP state of protocol `name` (e.g. "Established", "Active", "Connect").
    pub fn session_state(&self, name: &str) -> Result<String> {
        let out = self.birdc(&["show", "protocols", name])?;
        let line = out
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no protocol {name}: {out}"))?;
        Ok(line.split_whitespace().nth(5).unwrap_or("").to_string())
    }

    /// When protocol `name` last changed state (the "Since" column): a session
    /// that flapped has a later one even if it is Established again.
    pub fn session_since(&self, name: &str) -> Result<String> {
        let out = self.birdc(&["show", "protocols", name])?;
        let line = out
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no protocol {name}: {out}"))?;
        Ok(line.split_whitespace().nth(4).unwrap_or("").to_string())
    }

    /// Every protocol of `birdc show protocols all`, by name.
    pub fn protocols(&self) -> Result<BTreeMap<String, ProtocolDetails>> {
        Ok(protocols_all(&self.birdc(&["show", "protocols", "all"])?))
    }

    /// Namespace of this BIRD.
    pub fn netns_name(&self) -> &str {
        &self.netns_name
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(3));
        }
    }
}

/// BIRD's config: `asn` and `router_id`, a kernel protocol per family with
/// `merge paths` (one route with several next hops), and one BGP session per
/// neighbor (import all, export nothing, Graceful Restart helper).
pub fn bird_config(asn: u32, router_id: &str, neighbors: &[Neighbor]) -> String {
    let mut config = format!(
        "router id {router_id};\n\
         log stderr all;\n\
         protocol device {{ scan time 1; }}\n\
         protocol kernel kernel4 {{ scan time 1; merge paths yes limit 16; ipv4 {{ export all; import none; }}; }}\n\
         protocol kernel kernel6 {{ scan time 1; merge paths yes limit 16; ipv6 {{ export all; import none; }}; }}\n"
    );
    for n in neighbors {
        let password = n
            .password
            .as_ref()
            .map(|p| format!("  password \"{p}\";\n"))
            .unwrap_or_default();
        let kind = if n.asn == asn { "  direct;\n" } else { "" };
        config.push_str(&format!(
            "protocol bgp {name} {{\n  local as {asn};\n  neighbor {addr} as {peer};\n{kind}{password}  \
             hold time 9;\n  connect retry time 1;\n  error wait time 1, 5;\n  graceful restart on;\n  \
             ipv4 {{ import all; export none; }};\n  ipv6 {{ import all; export none; }};\n}}\n",
            name = n.name,
            addr = n.address,
            peer = n.asn,
        ));
    }
    config
}

/// Next hops of the kernel route to exactly `prefix` in `netns` (empty when
/// there is none): both `via X` and multipath `nexthop via X` forms.
pub fn kernel_next_hops(netns: &Netns, prefix: &str) -> Result<Vec<IpAddr>> {
    let family = if prefix.contains(':') { "-6" } else { "-4" };
    let out = run(Command::new("ip").args([
        "-n",
        &netns.name,
        family,
        "route",
        "show",
        "exact",
        prefix,
    ]))?;
    let words: Vec<&str> = out.split_whitespace().collect();
    let mut hops: Vec<IpAddr> = words
        .windows(2)
        .filter(|w| w[0] == "via")
        .filter_map(|w| w[1].parse().ok())
        .collect();
    hops.sort();
    hops.dedup();
    Ok(hops)
}

/// A running GoBGP daemon in a namespace, driven by the `gobgp` CLI on its
/// own loopback gRPC port.
pub struct GoBgp {
    child: Option<Child>,
    netns_name: String,
    api_port: u16,
}

impl GoBgp {
    pub fn start(
        netns: &Netns,
        dir: &std::path::Path,
        asn: u32,
        router_id: &str,
        neighbors: &[Neighbor],
    ) -> Result<GoBgp> {
        let mut config = format!("[global.config]\n  as = {asn}\n  router-id = \"{router_id}\"\n");
        for n in neighbors {
            config.push_str(&format!(
                "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{}\"\n    peer-as = {}\n",
                n.address, n.asn
            ));
            if let Some(p) = &n.password {
                config.push_str(&format!("    auth-password = \"{p}\"\n"));
            }
            config.push_str(
                "  [neighbors.timers.config]\n    connect-retry = 1\n    hold-time = 9\n    keepalive-interval = 3\n\
                 [[neighbors.afi-safis]]\n  [neighbors.afi-safis.config]\n    afi-safi-name = \"ipv4-unicast\"\n\
                 [[neighbors.afi-safis]]\n  [neighbors.afi-safis.config]\n    afi-safi-name = \"ipv6-unicast\"\n",
            );
        }
        let config_path = dir.join(format!("gobgp-{}.toml", netns.name));
        std::fs::write(&config_path, &config)?;
        let log = dir.join(format!("gobgp-{}.log", netns.name));
        // The gRPC API listens on the namespace's own loopback.
        let api_port = 50051;
        let mut command = netns.command("gobgpd");
        command
            .arg("-f")
            .arg(&config_path)
            .arg("-t")
            .arg("toml")
            .arg(format!("--api-hosts=127.0.0.1:{api_port}"));
        let child = spawn_tied(command, &log)?;
        let gobgp = GoBgp {
            child: Some(child),
            netns_name: netns.name.clone(),
            api_port,
        };
        wait_started("gobgpd", netns, &log, || gobgp.cli(&["global"]).is_ok())?;
        Ok(gobgp)
    }

    /// Runs the `gobgp` CLI inside the namespace.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        run(Command::new("ip")
            .args(["netns", "exec", &self.netns_name, "gobgp", "-p"])
            .arg(self.api_port.to_string())
            .args(args))
    }
}

impl Drop for GoBgp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(3));
        }
    }
}

/// One protocol of `birdc show protocols all`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProtocolDetails {
    /// The Info column's first word: "Established", "Active", "Connect"...
    pub state: String,
    /// The indented lines under the protocol's line.
    pub details: String,
}

impl ProtocolDetails {
    /// BIRD is helping the neighbour through a Graceful Restart (RFC 4724):
    /// it keeps the neighbour's routes, stale, until its End-of-RIB.
    pub fn graceful_restart_active(&self) -> bool {
        self.details.contains("Neighbor graceful restart active")
    }

    /// The neighbour's OPEN of the established session had the Graceful
    /// Restart capability.
    pub fn neighbor_offers_graceful_restart(&self) -> bool {
        self.details
            .split("Neighbor capabilities")
            .nth(1)
            .and_then(|caps| caps.split("Session:").next())
            .is_some_and(|caps| caps.lines().any(|l| l.trim() == "Graceful restart"))
    }
}

/// `birdc show protocols all` split by protocol name.
pub fn protocols_all(out: &str) -> BTreeMap<String, ProtocolDetails> {
    let mut protocols = BTreeMap::new();
    let mut current: Option<(String, ProtocolDetails)> = None;
    for line in out.lines() {
        if line.starts_with(char::is_whitespace) {
            if let Some((_, protocol)) = current.as_mut() {
                protocol.details.push_str(line);
                protocol.details.push('\n');
            }
            continue;
        }
        if let Some((name, protocol)) = current.take() {
            protocols.insert(name, protocol);
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() < 5 || words[0] == "Name" || words[0] == "BIRD" {
            continue;
        }
        let protocol = ProtocolDetails {
            state: words.get(5).copied().unwrap_or_default().to_string(),
            details: String::new(),
        };
        current = Some((words[0].to_string(), protocol));
    }
    if let Some((name, protocol)) = current {
        protocols.insert(name, protocol);
    }
    protocols
}

/// Polls `answers` for up to 10 s; on timeout, fails with the daemon's log.
fn wait_started(
    daemon: &str,
    netns: &Netns,
    log: &std::path::Path,
    answers: impl Fn() -> bool,
) -> Result<()> {
    for _ in 0..100 {
        if answers() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "{daemon} did not start in {}: {}",
        netns.name,
        std::fs::read_to_string(log).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As BIRD 2.0.12 shows it (abridged): node_0 restarting gracefully,
    /// node_1 established with the capability.
    const PROTOCOLS: &str = "BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     15:07:35.520  

node_0     BGP        ---        start  15:09:01.002  Active        Socket: Connection closed
  BGP state:          Active
    Neighbor address: 198.51.100.10
    Neighbor AS:      64512
    Neighbor graceful restart active
    Connect delay:    0.512/1

node_1     BGP        ---        up     15:08:00.100  Established   
  BGP state:          Established
    Neighbor address: 198.51.100.11
    Local capabilities
      Multiprotocol
        AF announced: ipv4 ipv6
      Graceful restart
    Neighbor capabilities
      Multiprotocol
        AF announced: ipv4
      4-octet AS numbers
    Session:          external AS4
";

    #[test]
    fn protocols_split_by_name_with_their_state_and_restart() {
        let protocols = protocols_all(PROTOCOLS);
        assert_eq!(
            protocols.keys().collect::<Vec<_>>(),
            ["device1", "node_0", "node_1"]
        );
        let (n0, n1) = (&protocols["node_0"], &protocols["node_1"]);
        assert_eq!(
            (n0.state.as_str(), n1.state.as_str()),
            ("Active", "Established")
        );
        assert!(n0.graceful_restart_active());
        assert!(!n1.graceful_restart_active());
        // Only we offered it: the neighbour's section lacks it.
        assert!(!n1.neighbor_offers_graceful_restart());
        let offered = PROTOCOLS.replace(
            "      4-octet AS numbers",
            "      Graceful restart\n        Restart time: 120\n      4-octet AS numbers",
        );
        assert!(protocols_all(&offered)["node_1"].neighbor_offers_graceful_restart());
    }
}
