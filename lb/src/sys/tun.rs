//! A TUN device that lives exactly as long as its file descriptor: the
//! announced routes point at it, so when the daemon dies for any reason
//! (SIGKILL, panic, OOM) the kernel removes the device and BIRD withdraws
//! the routes without anyone's help.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;

/// An up, non-persistent TUN device; dropping it removes the device.
#[derive(Debug)]
pub struct Tun {
    _device: File,
}

/// `struct ifreq` with the name and the flags word it is used with here.
fn request(name: &str, flags: libc::c_short) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an interface name",
        ));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in ifr.ifr_name.iter_mut().zip(bytes) {
        *slot = *byte as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = flags;
    Ok(ifr)
}

impl Tun {
    /// Creates the TUN device `name` and sets it up. Fails with EBUSY when
    /// another process holds a device of that name.
    pub fn create(name: &str) -> io::Result<Tun> {
        let device = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")?;
        let mut ifr = request(name, (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short)?;
        // SAFETY: TUNSETIFF reads and writes one ifreq, which lives for
        // the call; the descriptor is open.
        if unsafe { libc::ioctl(device.as_raw_fd(), libc::TUNSETIFF, &mut ifr) } < 0 {
            return Err(io::Error::last_os_error());
        }
        set_up(name)?;
        Ok(Tun { _device: device })
    }
}

fn set_up(name: &str) -> io::Result<()> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    let mut ifr = request(name, 0)?;
    // SAFETY: SIOCGIFFLAGS fills the flags of the ifreq it is given, which
    // lives for the call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS just wrote the flags member of the union.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    ifr.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads one ifreq, which lives for the call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
