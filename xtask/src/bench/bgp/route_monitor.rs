//! Kernel route changes in a namespace, timestamped, from `ip -ts -o monitor route`.

use std::io::{Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};

use ferrolb_tests::netns::Netns;
use ferrolb_tests::process::{spawn_tied, terminate};

/// One route change seen by `ip monitor`.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteEvent {
    pub at: SystemTime,
    pub destination: IpAddr,
    /// Sorted next hops; empty when the route was deleted.
    pub next_hops: Vec<IpAddr>,
}

/// Parses one line of `TZ=UTC ip -ts -o monitor route`, e.g.
/// `[2026-11-26T17:44:34.094099] 203.0.113.5 \tnexthop via 198.51.100.2 dev d0 weight 1 ...`
/// or `[...] Deleted 203.0.113.5 via 198.51.100.4 dev d0`. Lines that are
/// not unicast routes with an address (local, multicast, ...) give `None`.
pub fn parse_monitor_line(line: &str) -> Option<RouteEvent> {
    let rest = line.strip_prefix('[')?;
    let (stamp, rest) = rest.split_once(']')?;
    let at = parse_utc_stamp(stamp)?;
    let mut words = rest.split_whitespace().peekable();
    let deleted = words.next_if_eq(&"Deleted").is_some();
    let destination = words.next()?;
    let destination: IpAddr = destination
        .split_once('/')
        .map_or(destination, |(address, _)| address)
        .parse()
        .ok()?;
    let words: Vec<&str> = words.collect();
    if words.contains(&"table") {
        // Local and other non-main tables.
        return None;
    }
    let mut next_hops: Vec<IpAddr> = if deleted {
        Vec::new()
    } else {
        words
            .windows(2)
            .filter(|w| w[0] == "via")
            .filter_map(|w| w[1].parse().ok())
            .collect()
    };
    next_hops.sort();
    next_hops.dedup();
    Some(RouteEvent {
        at,
        destination,
        next_hops,
    })
}

/// `2026-11-26T17:44:34.094099` (UTC) as a time.
fn parse_utc_stamp(stamp: &str) -> Option<SystemTime> {
    let (date, time) = stamp.split_once('T')?;
    let mut date = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut hms = hms.splitn(3, ':').map(|p| p.parse::<u64>().ok());
    let (hour, minute, second) = (hms.next()??, hms.next()??, hms.next()??);
    let digits = fraction.len().min(9);
    let nanos: u64 = fraction.get(..digits)?.parse().ok()?;
    let nanos = nanos * 10u64.pow(9 - digits as u32);
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_nanos(nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's method).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `ip -ts -o monitor route` in a namespace, written to a file that
/// [`RouteMonitor::wait_next_hops`] reads as it goes.
pub struct RouteMonitor {
    child: Option<Child>,
    file: PathBuf,
    read_to: u64,
    partial: String,
    events: Vec<RouteEvent>,
}

impl RouteMonitor {
    pub fn start(netns: &Netns, dir: &std::path::Path) -> Result<RouteMonitor> {
        let file = dir.join(format!("route-monitor-{}.txt", netns.name));
        let mut command = Command::new("ip");
        command
            .args(["-n", &netns.name, "-ts", "-o", "monitor", "route"])
            .env("TZ", "UTC");
        let child = spawn_tied(command, &file)?;
        // `ip` subscribes right after it starts; give it that moment.
        std::thread::sleep(Duration::from_millis(200));
        Ok(RouteMonitor {
            child: Some(child),
            read_to: 0,
            partial: String::new(),
            events: Vec::new(),
            file,
        })
    }

    /// Reads the lines written since the last call.
    fn read_new(&mut self) -> Result<()> {
        let mut file = std::fs::File::open(&self.file)?;
        file.seek(SeekFrom::Start(self.read_to))?;
        let mut new = String::new();
        self.read_to += file.read_to_string(&mut new)? as u64;
        self.partial.push_str(&new);
        while let Some((line, rest)) = self.partial.split_once('\n') {
            if let Some(event) = parse_monitor_line(line) {
                self.events.push(event);
            }
            self.partial = rest.to_string();
        }
        Ok(())
    }

    /// Waits until a route change at or after `since` leaves `ip` with
    /// exactly `next_hops` (none: deleted) and returns when it happened.
    pub async fn wait_next_hops(
        &mut self,
        ip: IpAddr,
        next_hops: &[IpAddr],
        since: SystemTime,
        timeout: Duration,
    ) -> Result<SystemTime> {
        let mut expected = next_hops.to_vec();
        expected.sort();
        let deadline = Instant::now() + timeout;
        loop {
            self.read_new()?;
            let reached = self
                .events
                .iter()
                .filter(|e| e.destination == ip && e.at >= since)
                .find(|e| e.next_hops == expected)
                .map(|e| e.at);
            if let Some(at) = reached {
                return Ok(at);
            }
            if Instant::now() > deadline {
                let seen: Vec<&RouteEvent> =
                    self.events.iter().filter(|e| e.destination == ip).collect();
                bail!("no route change to {expected:?} for {ip} within {timeout:?}; saw {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for RouteMonitor {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(2));
        }
        let _ = std::fs::remove_file(&self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_lines_give_destination_next_hops_and_time() {
        let multipath = "[2026-11-26T17:44:34.094099] 203.0.113.5 \tnexthop via 198.51.100.2 dev d0 weight 1 \tnexthop via 198.51.100.3 dev d0 weight 1 ";
        let event = parse_monitor_line(multipath).expect("a route");
        assert_eq!(event.destination, "203.0.113.5".parse::<IpAddr>().unwrap());
        assert_eq!(
            event.next_hops,
            vec![
                "198.51.100.2".parse::<IpAddr>().unwrap(),
                "198.51.100.3".parse().unwrap()
            ]
        );
        let since_epoch = event.at.duration_since(UNIX_EPOCH).unwrap();
        // 2026-11-26T17:44:34Z
        assert_eq!(since_epoch.as_secs(), 1_795_715_074);
        assert_eq!(since_epoch.subsec_micros(), 94_099);

        let deleted = parse_monitor_line(
            "[2026-11-26T17:44:34.102804] Deleted 203.0.113.5 via 198.51.100.4 dev d0 ",
        )
        .expect("a deletion");
        assert!(deleted.next_hops.is_empty());
        let single = parse_monitor_line(
            "[2026-11-26T17:44:34.130615] 2001:db8:bd::5 via 2001:db8:99::4 dev d0 proto bird metric 32 pref medium",
        )
        .expect("a route");
        assert_eq!(
            single.next_hops,
            vec!["2001:db8:99::4".parse::<IpAddr>().unwrap()]
        );
        assert!(
            parse_monitor_line(
                "[2026-11-26T17:44:34.3] local fe80::1 dev d0 table local proto kernel"
            )
            .is_none()
        );
        assert!(parse_monitor_line("garbage").is_none());
    }

    #[test]
    fn days_from_civil_matches_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
    }
}
