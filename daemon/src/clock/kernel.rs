//! The kernel's view of clock synchronisation, read with `adjtimex(2)`.
//!
//! NTP daemons (chronyd, ntpd, systemd-timesyncd) discipline the kernel clock and clear
//! `STA_UNSYNC` in the kernel's time status while they hold it synchronised; they also keep the
//! kernel's `maxerror` estimate current. The kernel sets `STA_UNSYNC` at boot and again when
//! nobody updates `maxerror` for long enough (it grows by 500 µs every second). `timedatectl`
//! and `chronyc` read the same flag; reading it directly needs no daemon and no D-Bus.
//!
//! This is the one `unsafe` block outside the PKCS#11 module: `libc` offers no safe wrapper and
//! neither `rustix` nor `std` expose `adjtimex`. The call is made with `modes = 0`, which only
//! reads, so it needs no privilege and changes nothing.
#![allow(unsafe_code)]

/// What the kernel says about its clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelClock {
    /// `STA_UNSYNC` is set: no time daemon vouches for the clock.
    pub unsynchronised: bool,
    /// The kernel's maximum-error estimate, in microseconds.
    pub max_error_us: i64,
}

/// Reads the kernel clock status; `None` where the platform cannot tell.
#[cfg(target_os = "linux")]
pub fn read() -> Option<KernelClock> {
    // SAFETY: `timex` is a plain C struct of integers for which all-zero bytes are a valid value;
    // `modes = 0` (zeroed) asks adjtimex(2) only to read.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `tx` is a valid, exclusively borrowed `timex` for the duration of the call.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return None;
    }
    Some(KernelClock {
        unsynchronised: tx.status & libc::STA_UNSYNC != 0,
        max_error_us: tx.maxerror as i64,
    })
}

/// Reads the kernel clock status; `None` where the platform cannot tell.
#[cfg(not(target_os = "linux"))]
pub fn read() -> Option<KernelClock> {
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_kernel_answers_on_linux() {
        if cfg!(target_os = "linux") {
            let k = super::read().expect("adjtimex with modes 0 needs no privilege");
            assert!(k.max_error_us >= 0);
        }
    }
}
