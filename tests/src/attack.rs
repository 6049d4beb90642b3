//! `tollgate-e2e attack CASE`: one attempt to get a packet out of a pod,
//! run inside the pod (netns and cgroup, entered by `exec-in`). With
//! `--uid`, the process first becomes that user and keeps CAP_NET_RAW only,
//! as a default container's non-root process would. Prints one JSON line:
//! who it ran as, how many sends the kernel accepted and the first error.
//! Whether anything got out is for the sniffer on the external host to say
//! (`attack-sniff`), never for this result.
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::attack_packets as pk;
use crate::traffic::{forged_udp_socket, setsockopt_int, sockaddr};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Case {
    /// connect() then write the tag.
    TcpConnect,
    /// sendto() on an unconnected UDP socket.
    UdpSendto,
    /// connect() then send().
    UdpConnect,
    /// sendmsg() with the address in msg_name.
    UdpSendmsg,
    /// sendmmsg(): one datagram to --allowed, then two to --to.
    UdpSendmmsg,
    /// connect() to --allowed, send, then sendto() --to.
    UdpConnectThenSendto,
    /// A 4000-byte datagram: the kernel fragments it.
    UdpFragmented,
    /// ICMP echo on a raw socket (SOCK_RAW IPPROTO_ICMP/ICMPV6).
    IcmpRaw,
    /// ICMP echo on a ping socket (SOCK_DGRAM; net.ipv4.ping_group_range).
    IcmpDgram,
    /// SCTP connect (skipped when the kernel has no SCTP).
    Sctp,
    /// SOCK_RAW IPPROTO_UDP: the kernel builds the IP header.
    RawProto,
    /// IPPROTO_RAW (IP_HDRINCL / IPv6 hdrincl): our IP header, --src as source.
    RawHdrincl,
    /// Our IP header with --spoof as the source.
    RawSpoofed,
    /// Our IP header with options (IPv4 Router Alert; IPv6 destination options).
    RawOptions,
    /// Two fragments of one UDP datagram, built by hand.
    FragPair,
    /// A lone non-first fragment.
    FragLone,
    /// A DNS query (UDP) to --to (an outside resolver).
    DnsUdp,
    /// A DNS query over TCP.
    DnsTcp,
    /// The `lo` poisoning: a socket bound to --to (IPv6 FREEBIND, IPv4
    /// IP_TRANSPARENT) sends to our --local-port over lo; the receiver then
    /// answers --to, unconnected and connected.
    LoPoison,
    /// AF_PACKET SOCK_RAW: a whole Ethernet frame to --dst-mac.
    PacketRaw,
    /// AF_PACKET SOCK_DGRAM: the kernel adds the Ethernet header.
    PacketDgram,
    /// AF_PACKET SOCK_RAW with PACKET_QDISC_BYPASS.
    PacketQdiscBypass,
    /// AF_PACKET SOCK_RAW with --spoof as the IP source.
    PacketSpoofed,
}

#[derive(Clone, Debug, Args)]
pub struct AttackArgs {
    #[arg(value_enum)]
    pub case: Case,
    /// Destination (for ICMP the port is ignored).
    #[arg(long)]
    pub to: SocketAddr,
    /// Tag carried in every payload (`tgbx-...`).
    #[arg(long)]
    pub tag: String,
    /// Become this uid (and gid) with CAP_NET_RAW only.
    #[arg(long)]
    pub uid: Option<u32>,
    /// The pod's own address of --to's family (hand-built headers).
    #[arg(long)]
    pub src: Option<IpAddr>,
    /// Forged source address.
    #[arg(long)]
    pub spoof: Option<IpAddr>,
    /// An address the pod may reach (sendmmsg, connect-then-sendto).
    #[arg(long)]
    pub allowed: Option<SocketAddr>,
    /// Next-hop MAC for AF_PACKET (the node's bridge).
    #[arg(long)]
    pub dst_mac: Option<String>,
    /// The pod's port for the `lo` poisoning.
    #[arg(long, default_value_t = 7777)]
    pub local_port: u16,
}

#[derive(Debug, Default, Serialize)]
pub struct AttackResult {
    pub case: String,
    pub uid: u32,
    /// CapEff of the process when it attacked (hex, as in /proc).
    pub cap_eff: String,
    /// Sends (or connects) the kernel accepted.
    pub sent: u64,
    /// errno of the first refused call.
    pub errno: Option<i32>,
    pub error: String,
    /// Why the case could not be staged at all (e.g. no SCTP in the kernel).
    pub skipped: String,
    /// Local ports of the TCP connections the kernel let through: the
    /// judge gives their packets to this attempt, even when they arrive late.
    pub local_ports: Vec<u16>,
}

const CAP_NET_RAW: u32 = 13;

/// Runs one attempt; setup problems of the harness itself (bad arguments,
/// dropping privileges) are errors, the kernel's refusals are results.
pub fn attack(a: &AttackArgs) -> anyhow::Result<AttackResult> {
    if let Some(uid) = a.uid {
        become_user_with_net_raw(uid)?;
    }
    let mut r = AttackResult {
        case: format!("{:?}", a.case),
        // SAFETY: getuid has no preconditions.
        uid: unsafe { libc::getuid() },
        cap_eff: cap_eff(),
        ..Default::default()
    };
    let mut tally = Tally::default();
    if let Err(e) = run_case(a, &mut tally) {
        match e {
            Staging::Skip(why) => r.skipped = why,
            Staging::Harness(e) => return Err(e),
        }
    }
    r.sent = tally.sent;
    r.local_ports = std::mem::take(&mut tally.local_ports);
    if let Some(e) = tally.first_error {
        r.errno = e.raw_os_error();
        r.error = e.to_string();
    }
    Ok(r)
}

/// Sends counted, and the first refusal kept.
#[derive(Default)]
struct Tally {
    sent: u64,
    first_error: Option<io::Error>,
    local_ports: Vec<u16>,
}

impl Tally {
    fn note<T>(&mut self, r: io::Result<T>) -> Option<T> {
        match r {
            Ok(v) => {
                self.sent += 1;
                Some(v)
            }
            Err(e) => {
                if self.first_error.is_none() {
                    self.first_error = Some(e);
                }
                None
            }
        }
    }

    /// A refusal that ends the attempt (the socket could not be made).
    fn fail<T>(&mut self, r: io::Result<T>) -> Option<T> {
        r.map_err(|e| {
            if self.first_error.is_none() {
                self.first_error = Some(e);
            }
        })
        .ok()
    }
}

enum Staging {
    Skip(String),
    Harness(anyhow::Error),
}

impl From<anyhow::Error> for Staging {
    fn from(e: anyhow::Error) -> Self {
        Staging::Harness(e)
    }
}

fn need<T: Copy>(v: Option<T>, flag: &str) -> Result<T, Staging> {
    v.ok_or_else(|| Staging::Harness(anyhow::anyhow!("this case needs {flag}")))
}

fn run_case(a: &AttackArgs, t: &mut Tally) -> Result<(), Staging> {
    let to = a.to;
    let tag = a.tag.as_str();
    let data = pk::payload(tag, 64);
    match a.case {
        Case::TcpConnect => {
            if let Some(mut s) = t.note(TcpStream::connect_timeout(&to, Duration::from_millis(1500))) {
                use std::io::Write;
                t.local_ports.extend(s.local_addr().ok().map(|a| a.port()));
                t.note(s.write_all(&data));
            }
        }
        Case::UdpSendto => {
            if let Some(s) = t.fail(udp_socket(to)) {
                t.note(s.send_to(&data, to));
            }
        }
        Case::UdpConnect => {
            if let Some(s) = t.fail(udp_socket(to)) {
                if t.note(s.connect(to)).is_some() {
                    t.note(s.send(&data));
                }
            }
        }
        Case::UdpSendmsg => {
            if let Some(s) = t.fail(udp_socket(to)) {
                t.note(sendmsg_to(&s, &data, to));
            }
        }
        Case::UdpSendmmsg => {
            let allowed = need(a.allowed, "--allowed")?;
            if let Some(s) = t.fail(udp_socket(to)) {
                match sendmmsg_to(&s, &data, &[allowed, to, to]) {
                    Ok(n) => t.sent += n as u64,
                    Err(e) => {
                        t.note::<()>(Err(e));
                    }
                }
            }
        }
        Case::UdpConnectThenSendto => {
            let allowed = need(a.allowed, "--allowed")?;
            if let Some(s) = t.fail(udp_socket(to)) {
                if t.note(s.connect(allowed)).is_some() {
                    t.note(s.send(&data));
                }
                t.note(sendmsg_to(&s, &data, to));
            }
        }
        Case::UdpFragmented => {
            if let Some(s) = t.fail(udp_socket(to)) {
                t.note(s.send_to(&pk::payload(tag, 4000), to));
            }
        }
        Case::IcmpRaw => {
            let (fam, proto) = if to.is_ipv4() { (libc::AF_INET, libc::IPPROTO_ICMP) } else { (libc::AF_INET6, libc::IPPROTO_ICMPV6) };
            if let Some(fd) = t.fail(socket(fam, libc::SOCK_RAW, proto)) {
                t.note(send_fd(&fd, &pk::echo_request(to.is_ipv6(), 0x7467, &data), SocketAddr::new(to.ip(), 0)));
            }
        }
        Case::IcmpDgram => {
            let (fam, proto) = if to.is_ipv4() { (libc::AF_INET, libc::IPPROTO_ICMP) } else { (libc::AF_INET6, libc::IPPROTO_ICMPV6) };
            if let Some(fd) = t.fail(socket(fam, libc::SOCK_DGRAM, proto)) {
                t.note(send_fd(&fd, &pk::echo_request(to.is_ipv6(), 0, &data), SocketAddr::new(to.ip(), 0)));
            }
        }
        Case::Sctp => {
            let fam = if to.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
            match socket(fam, libc::SOCK_STREAM, libc::IPPROTO_SCTP) {
                Err(e) if e.raw_os_error() == Some(libc::EPROTONOSUPPORT) || e.raw_os_error() == Some(libc::ESOCKTNOSUPPORT) => {
                    return Err(Staging::Skip(format!("no SCTP in this kernel (socket: {e}); load the sctp module to run this case")));
                }
                r => {
                    if let Some(fd) = t.fail(r) {
                        t.note(connect_fd(&fd, to));
                    }
                }
            }
        }
        Case::RawProto => {
            let src = need(a.src, "--src")?;
            let fam = if to.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
            if let Some(fd) = t.fail(socket(fam, libc::SOCK_RAW, libc::IPPROTO_UDP)) {
                t.note(send_fd(&fd, &pk::udp(src, to.ip(), 40000, to.port(), &data), SocketAddr::new(to.ip(), 0)));
            }
        }
        Case::RawHdrincl | Case::RawSpoofed => {
            let src = if a.case == Case::RawSpoofed { need(a.spoof, "--spoof")? } else { need(a.src, "--src")? };
            if let Some(fd) = t.fail(raw_ip_socket(to)) {
                t.note(send_fd(&fd, &pk::ip_udp(src, to.ip(), 40000, to.port(), &data), SocketAddr::new(to.ip(), 0)));
            }
        }
        Case::RawOptions => {
            let src = need(a.src, "--src")?;
            let u = pk::udp(src, to.ip(), 40000, to.port(), &data);
            let p = match (src, to.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => pk::ipv4(s.octets(), d.octets(), pk::PROTO_UDP, 0x7468, 0, &pk::ROUTER_ALERT, &u),
                (IpAddr::V6(s), IpAddr::V6(d)) => pk::ipv6(s.octets(), d.octets(), pk::NEXT_DSTOPTS, &pk::ipv6_dstopts(pk::PROTO_UDP, &u)),
                _ => return Err(anyhow::anyhow!("--src and --to of different families").into()),
            };
            if let Some(fd) = t.fail(raw_ip_socket(to)) {
                t.note(send_fd(&fd, &p, SocketAddr::new(to.ip(), 0)));
            }
        }
        Case::FragPair | Case::FragLone => {
            let src = need(a.src, "--src")?;
            // One UDP datagram of 8 + 160 bytes, cut after 80 bytes: each
            // piece holds a whole tag.
            let u = pk::udp(src, to.ip(), 40000, to.port(), &pk::payload(tag, 160));
            let (first, second) = u.split_at(80);
            let frags: Vec<(usize, bool, &[u8])> = if a.case == Case::FragPair {
                vec![(0, true, first), (80, false, second)]
            } else {
                vec![(80, false, second)]
            };
            if let Some(fd) = t.fail(raw_ip_socket(to)) {
                for (off, more, d) in frags {
                    let p = match (src, to.ip()) {
                        (IpAddr::V4(s), IpAddr::V4(dst)) => pk::ipv4(s.octets(), dst.octets(), pk::PROTO_UDP, 0x7469, pk::frag_field(off, more), &[], d),
                        (IpAddr::V6(s), IpAddr::V6(dst)) => {
                            pk::ipv6(s.octets(), dst.octets(), pk::NEXT_FRAGMENT, &pk::ipv6_fragment(pk::PROTO_UDP, off, more, 0x7467_0001, d))
                        }
                        _ => return Err(anyhow::anyhow!("--src and --to of different families").into()),
                    };
                    t.note(send_fd(&fd, &p, SocketAddr::new(to.ip(), 0)));
                }
            }
        }
        Case::DnsUdp => {
            if let Some(s) = t.fail(udp_socket(to)) {
                if t.note(s.send_to(&dns_query(tag), to)).is_some() {
                    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                    let mut buf = [0u8; 512];
                    t.note(s.recv_from(&mut buf));
                }
            }
        }
        Case::DnsTcp => {
            if let Some(mut s) = t.note(TcpStream::connect_timeout(&to, Duration::from_millis(1500))) {
                use std::io::Write;
                t.local_ports.extend(s.local_addr().ok().map(|a| a.port()));
                let q = dns_query(tag);
                let mut framed = (q.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&q);
                t.note(s.write_all(&framed));
            }
        }
        Case::LoPoison => lo_poison(a, &data, t)?,
        Case::PacketRaw | Case::PacketDgram | Case::PacketQdiscBypass | Case::PacketSpoofed => af_packet(a, &data, t)?,
    }
    Ok(())
}

fn lo_poison(a: &AttackArgs, data: &[u8], t: &mut Tally) -> Result<(), Staging> {
    let lo: IpAddr = if a.to.is_ipv4() { [127, 0, 0, 1].into() } else { Ipv6Addr::LOCALHOST.into() };
    let any: IpAddr = if a.to.is_ipv4() { [0, 0, 0, 0].into() } else { Ipv6Addr::UNSPECIFIED.into() };
    let Some(receiver) = t.fail(UdpSocket::bind(SocketAddr::new(any, a.local_port))) else { return Ok(()) };
    let _ = receiver.set_read_timeout(Some(Duration::from_millis(500)));
    let forger = match forged_udp_socket(a.to) {
        Ok(f) => f,
        Err(e) => {
            t.fail::<()>(Err(io::Error::other(format!("{e:#}"))));
            return Ok(());
        }
    };
    if t.note(forger.send_to(b"poison", SocketAddr::new(lo, a.local_port))).is_none() {
        return Ok(());
    }
    let mut buf = [0u8; 64];
    match receiver.recv_from(&mut buf) {
        Ok((_, from)) if from.ip().to_canonical() == a.to.ip().to_canonical() => {}
        Ok((_, from)) => return Err(Staging::Skip(format!("the forged datagram came from {from}, not {}", a.to))),
        Err(e) => return Err(Staging::Skip(format!("the forged datagram did not arrive over lo: {e}"))),
    }
    t.note(receiver.send_to(data, a.to));
    if t.note(receiver.connect(a.to)).is_some() {
        t.note(receiver.send(data));
    }
    Ok(())
}

fn af_packet(a: &AttackArgs, data: &[u8], t: &mut Tally) -> Result<(), Staging> {
    let dst_mac = parse_mac(a.dst_mac.as_deref().ok_or_else(|| anyhow::anyhow!("AF_PACKET cases need --dst-mac"))?)?;
    let src = if a.case == Case::PacketSpoofed { need(a.spoof, "--spoof")? } else { need(a.src, "--src")? };
    let ip = pk::ip_udp(src, a.to.ip(), 40000, a.to.port(), data);
    let ethertype: u16 = if a.to.is_ipv4() { 0x0800 } else { 0x86dd };
    let ifindex = ifindex("eth0")?;
    let dgram = a.case == Case::PacketDgram;
    let ty = if dgram { libc::SOCK_DGRAM } else { libc::SOCK_RAW };
    let Some(fd) = t.fail(socket(libc::AF_PACKET, ty, i32::from(ethertype.to_be()))) else { return Ok(()) };
    if a.case == Case::PacketQdiscBypass {
        setsockopt_int(fd.as_raw_fd(), libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1)?;
    }
    let frame = if dgram {
        ip
    } else {
        let mut f = dst_mac.to_vec();
        f.extend_from_slice(&mac_of("eth0")?);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(&ip);
        f
    };
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    ll.sll_family = libc::AF_PACKET as u16;
    ll.sll_protocol = ethertype.to_be();
    ll.sll_ifindex = ifindex as i32;
    ll.sll_halen = 6;
    ll.sll_addr[..6].copy_from_slice(&dst_mac);
    // SAFETY: sendto with our buffer and a valid sockaddr_ll.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&ll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    t.note(if n < 0 { Err(io::Error::last_os_error()) } else { Ok(()) });
    Ok(())
}

/// A DNS query for `<tag>.example.` type A.
fn dns_query(tag: &str) -> Vec<u8> {
    let mut q = vec![0x74, 0x67, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in [tag, "example"] {
        q.push(label.len().min(63) as u8);
        q.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

fn udp_socket(to: SocketAddr) -> io::Result<UdpSocket> {
    UdpSocket::bind(if to.is_ipv4() { SocketAddr::from(([0, 0, 0, 0], 0)) } else { SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)) })
}

fn socket(family: i32, ty: i32, proto: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket(2); the fd is owned at once.
    let fd = unsafe { libc::socket(family, ty | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// IPPROTO_RAW: IP_HDRINCL on IPv4, and on IPv6 too (Linux).
fn raw_ip_socket(to: SocketAddr) -> io::Result<OwnedFd> {
    socket(if to.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 }, libc::SOCK_RAW, libc::IPPROTO_RAW)
}

fn send_fd(fd: &OwnedFd, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
    let (ss, len) = sockaddr(to);
    // SAFETY: sendto with our buffer and a valid sockaddr.
    let n = unsafe { libc::sendto(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0, (&ss as *const libc::sockaddr_storage).cast(), len) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

fn connect_fd(fd: &OwnedFd, to: SocketAddr) -> io::Result<()> {
    let (ss, len) = sockaddr(to);
    // SAFETY: connect with a valid sockaddr.
    if unsafe { libc::connect(fd.as_raw_fd(), (&ss as *const libc::sockaddr_storage).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sendmsg_to(s: &UdpSocket, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
    let (mut ss, len) = sockaddr(to);
    let mut iov = libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: all-zero is a valid msghdr; its pointers are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut ss as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = len;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: msg points at live buffers for the call.
    let n = unsafe { libc::sendmsg(s.as_raw_fd(), &msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// sendmmsg() of `buf` to each address; the number the kernel sent.
fn sendmmsg_to(s: &UdpSocket, buf: &[u8], to: &[SocketAddr]) -> io::Result<usize> {
    let mut names: Vec<(libc::sockaddr_storage, u32)> = to.iter().map(|a| sockaddr(*a)).collect();
    let mut iovs: Vec<libc::iovec> =
        to.iter().map(|_| libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: buf.len() }).collect();
    let mut msgs: Vec<libc::mmsghdr> = names
        .iter_mut()
        .zip(iovs.iter_mut())
        .map(|((ss, len), iov)| {
            // SAFETY: all-zero is a valid mmsghdr; its pointers are set here.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = (ss as *mut libc::sockaddr_storage).cast();
            m.msg_hdr.msg_namelen = *len;
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    // SAFETY: msgs points at live buffers for the call.
    let n = unsafe { libc::sendmmsg(s.as_raw_fd(), msgs.as_mut_ptr(), msgs.len() as u32, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if (n as usize) < to.len() {
        // The kernel stops at the first refused message: say why.
        return match sendmsg_to(s, buf, to[n as usize]) {
            Err(e) => Err(io::Error::new(e.kind(), format!("sendmmsg sent {n} of {}; message {n}: {e}", to.len()))),
            Ok(_) => Ok(n as usize + 1),
        };
    }
    Ok(n as usize)
}

fn parse_mac(s: &str) -> anyhow::Result<[u8; 6]> {
    let parts: Vec<u8> = s.split(':').map(|h| u8::from_str_radix(h, 16)).collect::<Result<_, _>>().map_err(|e| anyhow::anyhow!("--dst-mac {s}: {e}"))?;
    parts.try_into().map_err(|_| anyhow::anyhow!("--dst-mac {s}: not six bytes"))
}

fn ifindex(name: &str) -> anyhow::Result<u32> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: a valid NUL-terminated name.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        anyhow::bail!("no interface {name}: {}", io::Error::last_os_error());
    }
    Ok(i)
}

/// The MAC address of `name` in this netns (getifaddrs' AF_PACKET entry:
/// /sys would show the netns the process started in).
fn mac_of(name: &str) -> anyhow::Result<[u8; 6]> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills head; freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        anyhow::bail!("getifaddrs: {}", io::Error::last_os_error());
    }
    let mut found = None;
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: cur is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        // SAFETY: ifa_name is a NUL-terminated string of the list.
        let n = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        // SAFETY: ifa_addr, when set, points at a sockaddr of its family.
        if n.to_bytes() == name.as_bytes() && !ifa.ifa_addr.is_null() && i32::from(unsafe { (*ifa.ifa_addr).sa_family }) == libc::AF_PACKET {
            // SAFETY: an AF_PACKET ifa_addr is a sockaddr_ll.
            let ll = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_ll) };
            let mut m = [0u8; 6];
            m.copy_from_slice(&ll.sll_addr[..6]);
            found = Some(m);
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: head came from getifaddrs.
    unsafe { libc::freeifaddrs(head) };
    found.ok_or_else(|| anyhow::anyhow!("no link-layer address for {name}"))
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// setgroups([]), setresgid/setresuid(uid) keeping capabilities across the
/// change, then CAP_NET_RAW as the only permitted and effective capability.
fn become_user_with_net_raw(uid: u32) -> anyhow::Result<()> {
    let check = |rc: libc::c_long, what: &str| -> anyhow::Result<()> {
        if rc != 0 {
            anyhow::bail!("{what}: {}", io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: plain process-credential syscalls on ourselves.
    unsafe {
        check(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) as libc::c_long, "PR_SET_KEEPCAPS")?;
        check(libc::setgroups(0, std::ptr::null()) as libc::c_long, "setgroups")?;
        check(libc::setresgid(uid, uid, uid) as libc::c_long, "setresgid")?;
        check(libc::setresuid(uid, uid, uid) as libc::c_long, "setresuid")?;
    }
    let hdr = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    data[0].effective = 1 << CAP_NET_RAW;
    data[0].permitted = 1 << CAP_NET_RAW;
    // SAFETY: capset with a v3 header and two data words.
    check(unsafe { libc::syscall(libc::SYS_capset, &hdr as *const CapHeader, data.as_ptr()) }, "capset")?;
    if cap_eff() != format!("{:016x}", 1u64 << CAP_NET_RAW) {
        anyhow::bail!("after dropping privileges CapEff is {}, not CAP_NET_RAW alone", cap_eff());
    }
    Ok(())
}

fn cap_eff() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_string())))
        .unwrap_or_default()
}
