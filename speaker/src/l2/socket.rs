//! Raw sockets for ARP and NDP on one interface, non-blocking and registered
//! with tokio. Thin: bytes in, bytes out; the codecs and decisions live in
//! [`super::arp`], [`super::ndp`] and [`super::plan`].
//!
//! No socket puts the NIC into promiscuous mode: the packet sockets see the
//! frames the NIC accepts anyway (broadcasts, frames to our MAC, and the
//! solicited-node groups joined through ordinary multicast membership).
//! Needs `CAP_NET_RAW` only.

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
use super::ndp::REQUIRED_HOP_LIMIT;
use super::ndp_frame::{ETHERTYPE_IPV6, NEIGHBOR_DISCOVERY_FILTER};

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

/// An `AF_PACKET`/`SOCK_RAW` socket receiving `ethertype` frames (Ethernet
/// header included) on interface `index` only, through `filter` if given.
fn open_packet_socket(
    index: u32,
    ethertype: u16,
    filter: Option<&[libc::sock_filter]>,
) -> io::Result<OwnedFd> {
    // Protocol 0 receives nothing until bind(): no frames from other
    // interfaces, and none that the filter would refuse, can slip in before
    // the socket is tied to `index` with its filter attached.
    let fd = new_socket(libc::AF_PACKET, 0)?;
    if let Some(filter) = filter {
        let program = libc::sock_fprog {
            len: u16::try_from(filter.len())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "BPF program too long"))?,
            filter: filter.as_ptr().cast_mut(),
        };
        // The kernel copies the program during the call; `filter` outlives it.
        set_option(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            &program,
        )?;
    }
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut address: libc::sockaddr_ll = unsafe { zeroed() };
    address.sll_family = libc::AF_PACKET as libc::sa_family_t;
    address.sll_protocol = ethertype.to_be();
    address.sll_ifindex = i32::try_from(index)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index too large"))?;
    // SAFETY: `address` is a valid sockaddr_ll and we pass its exact size.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&address as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })?;
    Ok(fd)
}

/// Receives the next frame on a packet socket whose packet type (`PACKET_HOST`,
/// `PACKET_OUTGOING`, ...) `wanted` accepts; the others are skipped.
async fn receive_frame(
    fd: &AsyncFd<OwnedFd>,
    buffer: &mut [u8],
    wanted: impl Fn(u8) -> bool,
) -> io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
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
            Ok(Ok((len, kind))) if wanted(kind) => return Ok(len),
            Ok(Ok(_)) | Err(_) => continue,
            Ok(Err(error)) => return Err(error),
        }
    }
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
        let fd = open_packet_socket(index, ETHERTYPE_ARP, None)?;
        Ok(ArpSocket { fd: register(fd)? })
    }

    /// Receives the next frame that arrived on the interface (frames we sent
    /// ourselves, which packet sockets also see, are skipped).
    pub async fn recv(&self, buffer: &mut [u8]) -> io::Result<usize> {
        receive_frame(&self.fd, buffer, |kind| kind != libc::PACKET_OUTGOING).await
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

/// Neighbor Discovery on one interface: a packet socket receives the
/// Neighbor Solicitations and Advertisements (whole frames, through
/// [`NEIGHBOR_DISCOVERY_FILTER`]), a raw `IPPROTO_ICMPV6` socket sends
/// with hop limit 255, and another one holds the solicited-node group
/// memberships.
///
/// The memberships have a socket of their own because the kernel charges
/// both them and a send's control message (the `IPV6_PKTINFO` naming the
/// source) to the socket's option memory (`net.core.optmem_max`): on one
/// socket, a full set of groups made every send fail with ENOBUFS.
///
/// Receiving frames rather than ICMPv6 messages is what lets a solicitation
/// sent to a Service IP itself (a reachability probe, unicast to our MAC)
/// reach us: the IPv6 stack drops it, as the IP is no local address, before
/// a raw ICMPv6 socket could see it. So the raw socket receives nothing.
#[derive(Debug)]
pub struct NdpSocket {
    fd: AsyncFd<OwnedFd>,
    frames: AsyncFd<OwnedFd>,
    memberships: OwnedFd,
    index: u32,
}

impl NdpSocket {
    /// Opens the sockets on interface `name`/`index`. Must be called inside a
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

        // Filter in the kernel: a set bit blocks that ICMPv6 type. All are
        // blocked, so nothing queues up here: the packet socket receives.
        let filter = [u32::MAX; 8];
        set_option(raw, libc::IPPROTO_ICMPV6, ICMP6_FILTER, &filter)?;
        let memberships = new_socket(libc::AF_INET6, libc::IPPROTO_ICMPV6)?;
        set_option(
            memberships.as_raw_fd(),
            libc::IPPROTO_ICMPV6,
            ICMP6_FILTER,
            &filter,
        )?;

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
        // Lets us answer from the Service IP (see send_to). Old kernels
        // without it make us answer from an interface address instead.
        let _ = set_option(raw, libc::IPPROTO_IPV6, libc::IPV6_FREEBIND, &on);

        let program: Vec<libc::sock_filter> = NEIGHBOR_DISCOVERY_FILTER
            .iter()
            .map(|instruction| libc::sock_filter {
                code: instruction.code,
                jt: instruction.jt,
                jf: instruction.jf,
                k: instruction.k,
            })
            .collect();
        let frames = open_packet_socket(index, ETHERTYPE_IPV6, Some(&program))?;

        Ok(NdpSocket {
            fd: register(fd)?,
            frames: register(frames)?,
            memberships,
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

    /// Makes the interface accept every multicast frame for the packet
    /// socket (`PACKET_MR_ALLMULTI`), or stops it: how solicitations still
    /// arrive when the kernel refuses more solicited-node groups. The kernel
    /// drops it when the socket closes.
    pub fn receive_all_multicast(&self, on: bool) -> io::Result<()> {
        let request = libc::packet_mreq {
            mr_ifindex: i32::try_from(self.index).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "interface index too large")
            })?,
            mr_type: libc::PACKET_MR_ALLMULTI as libc::c_ushort,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        let option = if on {
            libc::PACKET_ADD_MEMBERSHIP
        } else {
            libc::PACKET_DROP_MEMBERSHIP
        };
        set_option(self.frames.as_raw_fd(), libc::SOL_PACKET, option, &request)
    }

    fn membership(&self, option: libc::c_int, group: Ipv6Addr) -> io::Result<()> {
        let request = libc::ipv6_mreq {
            ipv6mr_multiaddr: libc::in6_addr {
                s6_addr: group.octets(),
            },
            ipv6mr_interface: self.index,
        };
        set_option(
            self.memberships.as_raw_fd(),
            libc::IPPROTO_IPV6,
            option,
            &request,
        )
    }

    /// Sends an ICMPv6 message to `destination` on this interface from the
    /// source address the kernel picks (our link-local one, for a multicast
    /// destination): how probes go out, so the answer comes back to us.
    pub async fn send_from_any(&self, message: &[u8], destination: Ipv6Addr) -> io::Result<()> {
        self.send_with_source(message, destination, None).await
    }

    /// Receives the next Neighbor Solicitation or Advertisement frame into
    /// `buffer`: one addressed to this host (our MAC, a multicast group,
    /// broadcast), not our own, and not one for another host that
    /// promiscuous mode lets in (the IPv6 stack would not have seen those
    /// either).
    pub async fn recv(&self, buffer: &mut [u8]) -> io::Result<usize> {
        receive_frame(&self.frames, buffer, |kind| {
            !matches!(kind, libc::PACKET_OUTGOING | libc::PACKET_OTHERHOST)
        })
        .await
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
