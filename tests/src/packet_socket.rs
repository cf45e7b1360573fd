//! A blocking `AF_PACKET` socket for the tests' hand-built frames (the ARP
//! prober, the unicast Neighbor Solicitation sender): whole Ethernet frames
//! out and in, on one interface of the calling thread's namespace.

// Raw libc socket calls; each unsafe block says why it is sound.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// A packet socket bound to one EtherType on one interface.
pub struct PacketSocket {
    fd: OwnedFd,
    /// The interface's MAC.
    pub mac: [u8; 6],
}

impl PacketSocket {
    /// Opens the socket on `interface` (whose MAC is `mac`) for `ethertype`
    /// frames; a receive returns empty-handed after `timeout`.
    pub fn open(
        interface: &str,
        mac: [u8; 6],
        ethertype: u16,
        timeout: Duration,
    ) -> Result<PacketSocket> {
        let name = std::ffi::CString::new(interface)?;
        // SAFETY: if_nametoindex reads a valid NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            bail!("no interface {interface}");
        }
        let protocol = ethertype.to_be();
        // SAFETY: plain socket call; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(protocol)) };
        if raw < 0 {
            bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain old data; zero is a valid start.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_protocol = protocol;
        address.sll_ifindex = index as i32;
        // SAFETY: the address points to a live sockaddr_ll of the given size.
        let bound = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&address as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if bound != 0 {
            bail!(
                "binding to {interface}: {}",
                std::io::Error::last_os_error()
            );
        }
        let timeout = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: the option value points to a live timeval of the given size.
        let set = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        if set != 0 {
            bail!("SO_RCVTIMEO: {}", std::io::Error::last_os_error());
        }
        Ok(PacketSocket { fd, mac })
    }

    /// Sends one whole frame.
    pub fn send(&self, frame: &[u8]) -> Result<()> {
        // SAFETY: the buffer is a live slice of the given length.
        let sent =
            unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if sent != frame.len() as isize {
            bail!("sending a frame: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// The next frame received within the timeout, if any.
    pub fn receive<'a>(&self, buffer: &'a mut [u8]) -> Option<&'a [u8]> {
        // SAFETY: the buffer is a live slice of the given length.
        let got = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                0,
            )
        };
        buffer.get(..usize::try_from(got).ok()?)
    }
}

/// `aa:bb:cc:dd:ee:ff` as six bytes.
pub fn parse_mac(text: &str) -> Result<[u8; 6]> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|part| u8::from_str_radix(part, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad MAC {text}"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("bad MAC {text}"))
}

/// Six bytes as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
