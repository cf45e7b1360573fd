//! Raw sockets for ARP and NDP on one interface, non-blocking and registered
//! with tokio. Thin: bytes in, bytes out; the codecs and decisions live in
//! [`super::arp`], [`super::ndp`] and [`super::plan`].
//!
//! Neither socket puts the NIC into promiscuous mode: the ARP socket sees
//! the frames the NIC accepts anyway (broadcasts and frames to our MAC), and
//! the NDP socket hears solicited-node groups through ordinary multicast
//! membership. Needs `CAP_NET_RAW` only.

// Raw libc socket and signal calls; each unsafe block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::arp::ETHERTYPE_ARP;
use super::ndp::{ICMPV6_NEIGHBOR_ADVERTISEMENT, ICMPV6_NEIGHBOR_SOLICITATION, REQUIRED_HOP_LIMIT};

/// `ICMP6_FILTER` from `<netinet/icmp6.h>` (level `IPPROTO_ICMPV6`); libc lacks it.
const ICMP6_FILTER: libc::c_int = 1;

/// Whether a socket error means the interface is gone or down, so the
/// interface should be dropped until a rescan finds it usable again.
pub fn interface_gone(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENETDOWN | libc::ENXIO | libc::ENODEV)
    )
}

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

fn check_len(result: libc::ssize_t) -> io::Result<usize> {
    usize::try_from(result).map_err(|_| io::Error::last_os_error())
}

fn new_socket(domain: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    let kind = libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: plain syscall; on success we own the returned descriptor.
    let fd = check(unsafe { libc::socket(domain, kind, protocol) })?;
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is an open descriptor that stays open, and always
    // returns the same number, until the AsyncFd owning it is dropped.
    let registered =
        unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE | Interest::WRITABLE) };
    Ok(registered?)
}

fn set_option<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    let len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` points at `len` readable bytes for the duration of the call.
    check(unsafe { libc::setsockopt(fd, level, name, (value as *const T).cast(), len) })?;
    Ok(())
}

/// An `AF_PACKET`/`SOCK_RAW` socket receiving and sending ARP frames
/// (Ethernet header included) on one interface.
#[derive(Debug)]
pub struct ArpSocket {
    fd: AsyncFd<OwnedFd>,
}

impl ArpSocket {
    /// Opens the socket on interface `index`. Must be called inside a tokio
    /// runtime, in the network namespace of the interface.
    pub fn open(index: u32) -> io::Result<ArpSocket> {
        // Protocol 0 receives nothing until bind(): no frames from other
        // interfaces can slip in before the socket is tied to `index`.
        let fd = new_socket(libc::AF_PACKET, 0)?;
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut address: libc::sockaddr_ll = unsafe { zeroed() };
        address.sll_family = libc::AF_PACKET as libc::sa_family_t;
        address.sll_protocol = ETHERTYPE_ARP.to_be();
        address.sll_ifindex = i32::try_from(index).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "interface index too large")
        })?;
        // SAFETY: `address` is a valid sockaddr_ll and we pass its exact size.
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&address as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(ArpSocket { fd: register(fd)? })
    }

    /// Receives the next frame that arrived on the interface (frames we sent
    /// ourselves, which packet sockets also see, are skipped).
    pub async fn recv(&self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            let received = guard.try_io(|fd| {
                // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
                let mut from: libc::sockaddr_ll = unsafe { zeroed() };
                let mut from_len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                // SAFETY: `buffer` and `from` are valid for the lengths passed.
                let len = check_len(unsafe {
                    libc::recvfrom(
                        fd.as_raw_fd(),
                        buffer.as_mut_ptr().cast(),
                        buffer.len(),
                        0,
                        (&mut from as *mut libc::sockaddr_ll).cast(),
                        &mut from_len,
                    )
                })?;
                Ok((len, from.sll_pkttype))
            });
            match received {
                Ok(Ok((_, libc::PACKET_OUTGOING))) => continue,
                Ok(result) => return result.map(|(len, _)| len),
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends one frame, which must start with the Ethernet header.
    pub async fn send(&self, frame: &[u8]) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            // SAFETY: `frame` is valid for `frame.len()` bytes; the socket is
            // bound, so send() needs no address.
            let sent = guard.try_io(|fd| {
                check_len(unsafe {
                    libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0)
                })
            });
            if let Ok(result) = sent {
                return result.map(|_| ());
            }
        }
    }
}

/// An ICMPv6 message received on an [`NdpSocket`], with what `recvmsg`
/// said about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceivedIcmpv6 {
    pub len: usize,
    pub source: Ipv6Addr,
    /// The hop limit of the IPv6 header, if the kernel reported it.
    pub hop_limit: Option<u8>,
}

/// A raw `IPPROTO_ICMPV6` socket tied to one interface, receiving only
/// Neighbor Solicitations and Advertisements (the latter for conflict
/// detection) and sending with hop limit 255.
#[derive(Debug)]
pub struct NdpSocket {
    fd: AsyncFd<OwnedFd>,
    index: u32,
}

impl NdpSocket {
    /// Opens the socket on interface `name`/`index`. Must be called inside a
    /// tokio runtime, in the network namespace of the interface.
    pub fn open(name: &str, index: u32) -> io::Result<NdpSocket> {
        let fd = new_socket(libc::AF_INET6, libc::IPPROTO_ICMPV6)?;
        let raw = fd.as_raw_fd();

        let device = CString::new(name).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "interface name contains NUL")
        })?;
        let device = device.as_bytes_with_nul();
        // SAFETY: `device` is valid for its length for the duration of the call.
        check(unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                device.as_ptr().cast(),
                device.len() as libc::socklen_t,
            )
        })?;

        // Filter in the kernel: a set bit blocks that ICMPv6 type.
        let mut filter = [u32::MAX; 8];
        for kind in [ICMPV6_NEIGHBOR_SOLICITATION, ICMPV6_NEIGHBOR_ADVERTISEMENT] {
            let kind = usize::from(kind);
            if let Some(word) = filter.get_mut(kind / 32) {
                *word &= !(1u32 << (kind % 32));
            }
        }
        set_option(raw, libc::IPPROTO_ICMPV6, ICMP6_FILTER, &filter)?;

        let hop_limit: libc::c_int = REQUIRED_HOP_LIMIT.into();
        set_option(raw, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &hop_limit)?;
        set_option(
            raw,
            libc::IPPROTO_IPV6,
            libc::IPV6_MULTICAST_HOPS,
            &hop_limit,
        )?;
        let interface = libc::c_int::try_from(index).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "interface index too large")
        })?;
        set_option(raw, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_IF, &interface)?;
        let off: libc::c_int = 0;
        set_option(raw, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP, &off)?;
        let on: libc::c_int = 1;
        set_option(raw, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, &on)?;
        // Lets us answer from the Service IP (see send_to). Old kernels
        // without it make us answer from an interface address instead.
        let _ = set_option(raw, libc::IPPROTO_IPV6, libc::IPV6_FREEBIND, &on);

        Ok(NdpSocket {
            fd: register(fd)?,
            index,
        })
    }

    /// Joins `group` on this interface, so solicitations sent there arrive.
    pub fn join(&self, group: Ipv6Addr) -> io::Result<()> {
        self.membership(libc::IPV6_ADD_MEMBERSHIP, group)
    }

    pub fn leave(&self, group: Ipv6Addr) -> io::Result<()> {
        self.membership(libc::IPV6_DROP_MEMBERSHIP, group)
    }

    fn membership(&self, option: libc::c_int, group: Ipv6Addr) -> io::Result<()> {
        let request = libc::ipv6_mreq {
            ipv6mr_multiaddr: libc::in6_addr {
                s6_addr: group.octets(),
            },
            ipv6mr_interface: self.index,
        };
        set_option(self.fd.as_raw_fd(), libc::IPPROTO_IPV6, option, &request)
    }

    /// Sends an ICMPv6 message to `destination` on this interface from the
    /// source address the kernel picks (our link-local one, for a multicast
    /// destination): how probes go out, so the answer comes back to us.
    pub async fn send_from_any(&self, message: &[u8], destination: Ipv6Addr) -> io::Result<()> {
        self.send_with_source(message, destination, None).await
    }

    /// Receives the next Neighbor Solicitation or Advertisement into `buffer`.
    pub async fn recv(&self, buffer: &mut [u8]) -> io::Result<ReceivedIcmpv6> {
        loop {
            let mut guard = self.fd.readable().await?;
            if let Ok(result) = guard.try_io(|fd| receive_with_hop_limit(fd.as_raw_fd(), buffer)) {
                return result;
            }
        }
    }

    /// Sends an ICMPv6 message to `destination` on this interface, from
    /// `source` if the kernel lets us (`IPV6_FREEBIND` allows a source that
    /// is not configured locally, as a Service IP usually is not), else from
    /// the address the kernel picks.
    ///
    /// Answering from the target address itself is what the Linux kernel
    /// does for its own addresses, and some tools (ndisc6) ignore answers
    /// from a link-local source to a question about a global address.
    pub async fn send_to(
        &self,
        message: &[u8],
        destination: Ipv6Addr,
        source: Ipv6Addr,
    ) -> io::Result<()> {
        match self
            .send_with_source(message, destination, Some(source))
            .await
        {
            Err(error)
                if matches!(
                    error.raw_os_error(),
                    Some(libc::EINVAL | libc::EADDRNOTAVAIL)
                ) =>
            {
                self.send_with_source(message, destination, None).await
            }
            other => other,
        }
    }

    async fn send_with_source(
        &self,
        message: &[u8],
        destination: Ipv6Addr,
        source: Option<Ipv6Addr>,
    ) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            let sent = guard.try_io(|fd| {
                send_message(fd.as_raw_fd(), message, destination, source, self.index)
            });
            if let Ok(result) = sent {
                return result;
            }
        }
    }
}

/// One `sendmsg`, with an `IPV6_PKTINFO` control message naming the source
/// address when there is one.
fn send_message(
    fd: RawFd,
    message: &[u8],
    destination: Ipv6Addr,
    source: Option<Ipv6Addr>,
    index: u32,
) -> io::Result<()> {
    // SAFETY: sockaddr_in6 is plain data; all-zero is a valid value.
    let mut address: libc::sockaddr_in6 = unsafe { zeroed() };
    address.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    address.sin6_addr = libc::in6_addr {
        s6_addr: destination.octets(),
    };
    // Needed for link-local and multicast destinations; ignored otherwise.
    address.sin6_scope_id = index;
    let mut io_vector = libc::iovec {
        iov_base: message.as_ptr().cast_mut().cast(),
        iov_len: message.len(),
    };
    // u64 elements give the control buffer the alignment cmsghdr needs.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; all-zero is a valid value.
    let mut header: libc::msghdr = unsafe { zeroed() };
    header.msg_name = (&mut address as *mut libc::sockaddr_in6).cast();
    header.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    header.msg_iov = &mut io_vector;
    header.msg_iovlen = 1;
    if let Some(source) = source {
        let info = libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: source.octets(),
            },
            ipi6_ifindex: index,
        };
        let info_len = size_of::<libc::in6_pktinfo>() as libc::c_uint;
        header.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE only computes a size; 40 bytes fit in `control` (64).
        header.msg_controllen = unsafe { libc::CMSG_SPACE(info_len) } as _;
        // SAFETY: msg_control points at `control`, large enough for one
        // control message carrying an in6_pktinfo, so the first header and
        // its data lie inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&header);
            if let Some(cmsg) = cmsg.as_mut() {
                cmsg.cmsg_level = libc::IPPROTO_IPV6;
                cmsg.cmsg_type = libc::IPV6_PKTINFO;
                cmsg.cmsg_len = libc::CMSG_LEN(info_len) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::in6_pktinfo>(), info);
            }
        }
    }
    // SAFETY: every pointer in `header` refers to a live local buffer of the stated size.
    check_len(unsafe { libc::sendmsg(fd, &header, 0) })?;
    Ok(())
}

/// One `recvmsg` that also collects the source address and the
/// `IPV6_HOPLIMIT` control message.
fn receive_with_hop_limit(fd: RawFd, buffer: &mut [u8]) -> io::Result<ReceivedIcmpv6> {
    // SAFETY: sockaddr_in6 is plain data; all-zero is a valid value.
    let mut source: libc::sockaddr_in6 = unsafe { zeroed() };
    let mut io_vector = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    // u64 elements give the control buffer the alignment cmsghdr needs.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; all-zero is a valid value.
    let mut message: libc::msghdr = unsafe { zeroed() };
    message.msg_name = (&mut source as *mut libc::sockaddr_in6).cast();
    message.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    message.msg_iov = &mut io_vector;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = size_of::<[u64; 8]>() as _;
    // SAFETY: every pointer in `message` refers to a live local buffer of the stated size.
    let len = check_len(unsafe { libc::recvmsg(fd, &mut message, 0) })?;

    let mut hop_limit = None;
    // SAFETY: walking the control messages the kernel wrote into `control`,
    // with the libc macros that bound each step by msg_controllen.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&message);
        while let Some(current) = header.as_ref() {
            if current.cmsg_level == libc::IPPROTO_IPV6 && current.cmsg_type == libc::IPV6_HOPLIMIT
            {
                let value =
                    std::ptr::read_unaligned(libc::CMSG_DATA(current).cast::<libc::c_int>());
                hop_limit = u8::try_from(value).ok();
            }
            header = libc::CMSG_NXTHDR(&message, current);
        }
    }
    Ok(ReceivedIcmpv6 {
        len,
        source: Ipv6Addr::from(source.sin6_addr.s6_addr),
        hop_limit,
    })
}
