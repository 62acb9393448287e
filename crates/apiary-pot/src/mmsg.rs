//! Batched datagram I/O for the UDP loop (`recvmmsg`/`sendmmsg`): a busy listener pays one
//! system call per batch instead of one per datagram each way, which on a small VM is most of
//! what a query costs.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use bytes::Bytes;

/// Datagrams taken or sent per system call.
pub(crate) const BATCH: usize = 32;

/// Receive buffers for one batch: `BATCH` slots of `slot` bytes each, and what arrived.
pub(crate) struct RecvBatch {
    bufs: Vec<u8>,
    slot: usize,
    /// (slot, length, sender) of each datagram of the last call.
    got: Vec<(usize, usize, SocketAddr)>,
}

impl RecvBatch {
    /// Buffers for datagrams of up to `slot` bytes (longer ones are truncated by the kernel).
    /// The memory is zero-filled lazily by the allocator, so untouched slots cost no RSS.
    pub(crate) fn new(slot: usize) -> Self {
        Self { bufs: vec![0; slot * BATCH], slot, got: Vec::with_capacity(BATCH) }
    }

    /// Takes what is queued on `fd`, up to [`BATCH`] datagrams, without blocking
    /// (`WouldBlock` when nothing is); returns how many arrived.
    pub(crate) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.got.clear();
        // SAFETY: all-zero is a valid value of these plain C structs.
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for (((chunk, iov), hdr), name) in self
            .bufs
            .chunks_exact_mut(self.slot)
            .zip(iovs.iter_mut())
            .zip(hdrs.iter_mut())
            .zip(names.iter_mut())
        {
            iov.iov_base = chunk.as_mut_ptr().cast();
            iov.iov_len = chunk.len();
            hdr.msg_hdr.msg_name = (&raw mut *name).cast();
            hdr.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_hdr.msg_iov = &raw mut *iov;
            hdr.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at a live iovec over its own slot of `self.bufs` and at
        // its own sockaddr_storage, all of which outlive the call; vlen is the array length.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        for (slot, (hdr, name)) in hdrs.iter().zip(names.iter()).take(n).enumerate() {
            // A datagram from an address family we cannot name is dropped, as recv_from would
            // have failed on it.
            if let Some(from) = socket_addr(name) {
                self.got.push((slot, (hdr.msg_len as usize).min(self.slot), from));
            }
        }
        Ok(self.got.len())
    }

    /// The `i`th datagram of the last [`RecvBatch::recv`] and its sender.
    pub(crate) fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let &(slot, len, from) = self.got.get(i)?;
        let start = slot.checked_mul(self.slot)?;
        Some((self.bufs.get(start..start + len)?, from))
    }
}

/// The socket address in `s`, if it is IPv4 or IPv6.
fn socket_addr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET); sockaddr_storage is
            // large enough and suitably aligned for every sockaddr type.
            let a = unsafe { &*(&raw const *s).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6 (family AF_INET6).
            let a = unsafe { &*(&raw const *s).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Sends as many of `out` as the socket takes in one call, without blocking; returns how many
/// went (at least one), or the error of the first.
pub(crate) fn send(fd: RawFd, out: &[(SocketAddr, Bytes)]) -> io::Result<usize> {
    let out = out.get(..out.len().min(BATCH)).unwrap_or_default();
    let names: Vec<socket2::SockAddr> = out.iter().map(|(to, _)| (*to).into()).collect();
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    for ((((_, data), name), iov), hdr) in
        out.iter().zip(names.iter()).zip(iovs.iter_mut()).zip(hdrs.iter_mut())
    {
        // sendmsg never writes through msg_iov or msg_name; the C types are just not const.
        iov.iov_base = data.as_ptr().cast_mut().cast();
        iov.iov_len = data.len();
        hdr.msg_hdr.msg_name = name.as_ptr().cast_mut().cast();
        hdr.msg_hdr.msg_namelen = name.len();
        hdr.msg_hdr.msg_iov = &raw mut *iov;
        hdr.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the first `out.len()` headers point at live iovecs over `out`'s bytes and at
    // live socket addresses in `names`, all of which outlive the call.
    let n = unsafe {
        libc::sendmmsg(fd, hdrs.as_mut_ptr(), out.len() as libc::c_uint, libc::MSG_DONTWAIT)
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_goes_out_and_comes_back_with_its_senders() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("[::1]:0").ok();
        let to = server.local_addr().unwrap();
        let mut batch = RecvBatch::new(8);
        let err = batch.recv(server.as_raw_fd()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        for i in 0..40u8 {
            a.send_to(&[i; 3], to).unwrap();
        }
        a.send_to(b"longer than eight", to).unwrap();
        // The first call takes a full batch; the rest, including the truncated one, next.
        assert_eq!(batch.recv(server.as_raw_fd()).unwrap(), BATCH);
        assert_eq!(batch.get(5), Some((&[5u8; 3][..], a.local_addr().unwrap())));
        assert_eq!(batch.recv(server.as_raw_fd()).unwrap(), 9);
        assert_eq!(batch.get(8).unwrap().0, b"longer t");
        assert!(batch.get(9).is_none());

        let replies: Vec<(SocketAddr, Bytes)> =
            (0..3u8).map(|i| (a.local_addr().unwrap(), Bytes::from(vec![i; 2]))).collect();
        assert_eq!(send(server.as_raw_fd(), &replies).unwrap(), 3);
        let mut buf = [0u8; 16];
        for i in 0..3u8 {
            let (n, from) = a.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&[i; 2][..], to));
        }
        // IPv6 senders are named as such (where the host has IPv6 loopback).
        if let (Some(b), Ok(server6)) = (b, std::net::UdpSocket::bind("[::1]:0")) {
            b.send_to(b"six", server6.local_addr().unwrap()).unwrap();
            assert_eq!(batch.recv(server6.as_raw_fd()).unwrap(), 1);
            assert_eq!(batch.get(0), Some((&b"six"[..], b.local_addr().unwrap())));
        }
    }
}
