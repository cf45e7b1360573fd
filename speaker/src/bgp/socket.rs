//! Socket options a BGP session needs that tokio does not expose: TCP MD5 signatures
//! (RFC 2385) and the IP TTL / hop limit for eBGP.

// Raw libc socket and signal calls; each unsafe block says why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

/// The kernel's `struct tcp_md5sig` (linux/tcp.h).
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefix_len: u8,
    key_len: u16,
    ifindex: libc::c_int,
    key: [u8; TCP_MD5SIG_MAXKEYLEN],
}

const TCP_MD5SIG_MAXKEYLEN: usize = 80;

fn set_option<T>(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<T>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `value` points to a live, initialised `T` of exactly `len` bytes, and the
    // descriptor belongs to `socket`, which outlives the call.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (value as *const T).cast::<libc::c_void>(),
            len,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Signs every segment to and from `peer` with `password` (RFC 2385). Must be set
/// before connecting.
pub fn set_tcp_md5_password(socket: &impl AsRawFd, peer: IpAddr, password: &str) -> io::Result<()> {
    let key = password.as_bytes();
    if key.len() > TCP_MD5SIG_MAXKEYLEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "TCP MD5 password longer than 80 bytes",
        ));
    }
    // SAFETY: all-zero bytes are a valid value for this plain C struct of integers.
    let mut signature: TcpMd5Sig = unsafe { std::mem::zeroed() };
    match peer {
        IpAddr::V4(address) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            let sin = unsafe { &mut *(&raw mut signature.addr).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from_ne_bytes(address.octets());
        }
        IpAddr::V6(address) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            let sin6 = unsafe { &mut *(&raw mut signature.addr).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = address.octets();
        }
    }
    signature.key_len = u16::try_from(key.len()).unwrap_or(0);
    for (slot, byte) in signature.key.iter_mut().zip(key) {
        *slot = *byte;
    }
    set_option(socket, libc::IPPROTO_TCP, libc::TCP_MD5SIG, &signature)
}

/// Sets the TTL (IPv4) or unicast hop limit (IPv6) of outgoing packets.
pub fn set_ttl(socket: &impl AsRawFd, peer: SocketAddr, ttl: u8) -> io::Result<()> {
    let value = libc::c_int::from(ttl);
    match peer {
        SocketAddr::V4(_) => set_option(socket, libc::IPPROTO_IP, libc::IP_TTL, &value),
        SocketAddr::V6(_) => {
            set_option(socket, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_and_md5_options_are_accepted_by_the_kernel() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        set_ttl(&socket, "127.0.0.1:179".parse().unwrap(), 1).unwrap();
        assert_eq!(socket.ttl().unwrap(), 1);
        let tcp = tokio::net::TcpSocket::new_v4().unwrap();
        match set_tcp_md5_password(&tcp, "127.0.0.1".parse().unwrap(), "secret") {
            Ok(()) => {}
            // A kernel built without CONFIG_TCP_MD5SIG says so; anything else is a bug.
            Err(error) => assert_eq!(error.raw_os_error(), Some(libc::ENOPROTOOPT), "{error}"),
        }
        let too_long = "x".repeat(81);
        assert_eq!(
            set_tcp_md5_password(&tcp, "127.0.0.1".parse().unwrap(), &too_long)
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
