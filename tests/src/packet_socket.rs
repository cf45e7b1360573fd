//! A blocking `AF_PACKET` socket for the tests' hand-built frames (the ARP
//! prober, the unicast Neighbor Solicitation sender): whole Ethernet frames
//! out and in, on one interface of the calling thread's namespace.
//!
//! Frames come with the kernel's receive time (`SO_TIMESTAMPNS`), not the
//! time the test thread got round to reading them: on a loaded machine a
//! reader thread can be descheduled for milliseconds, and frames that
//! arrived apart would otherwise look simultaneous.

// Raw libc socket calls; each unsafe block says why it is sound.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

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
        let on: libc::c_int = 1;
        // SAFETY: the option value points to a live c_int of the given size.
        let set = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        if set != 0 {
            bail!("SO_TIMESTAMPNS: {}", std::io::Error::last_os_error());
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
        self.receive_stamped(buffer).map(|(frame, _)| frame)
    }

    /// The next frame received within the timeout, if any, with when the
    /// kernel received it (as an [`Instant`] of this process; the time the
    /// frame was read when the kernel gave no timestamp).
    pub fn receive_stamped<'a>(&self, buffer: &'a mut [u8]) -> Option<(&'a [u8], Instant)> {
        let mut iov = libc::iovec {
            iov_base: buffer.as_mut_ptr().cast(),
            iov_len: buffer.len(),
        };
        // Room for one timespec control message, 8-byte aligned.
        let mut control = [0u64; 8];
        // SAFETY: msghdr is plain old data; zero is a valid start.
        let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        message.msg_control = control.as_mut_ptr().cast();
        message.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: the message points to the live buffer and control array
        // above, with their lengths.
        let got = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut message, 0) };
        let read_at = Instant::now();
        let length = usize::try_from(got).ok()?;
        let received_at = kernel_timestamp(&message)
            .and_then(|kernel| SystemTime::now().duration_since(kernel).ok())
            .and_then(|age| read_at.checked_sub(age))
            .unwrap_or(read_at);
        Some((buffer.get(..length)?, received_at))
    }
}

/// The `SCM_TIMESTAMPNS` control message of a received `message`, if any.
fn kernel_timestamp(message: &libc::msghdr) -> Option<SystemTime> {
    // SAFETY: the CMSG macros walk the control buffer `recvmsg` filled, within
    // the length it set; the timespec is read unaligned.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(message);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET
                && (*header).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let stamp: libc::timespec =
                    std::ptr::read_unaligned(libc::CMSG_DATA(header).cast());
                let since_epoch = Duration::new(
                    u64::try_from(stamp.tv_sec).ok()?,
                    u32::try_from(stamp.tv_nsec).ok()?,
                );
                return SystemTime::UNIX_EPOCH.checked_add(since_epoch);
            }
            header = libc::CMSG_NXTHDR(message, header);
        }
    }
    None
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
