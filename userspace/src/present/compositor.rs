//! Which compositor answered: the process at the other end of the Wayland socket
//! (SO_PEERCRED), its executable, and the version it reports (`EXE --version`: "weston 10.0.1",
//! "kwin 5.27.10"), so that the evidence names the compositor it was measured on rather than
//! what the test meant to start.

use serde::Serialize;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::process::Command;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Compositor {
    pub pid: Option<u32>,
    /// /proc/PID/exe, or the process name when the link cannot be read.
    pub exe: Option<String>,
    /// The first line of `EXE --version`, or the executable's name when it prints none.
    pub version: String,
}

/// The peer of the connected Wayland socket `fd`.
pub fn identify(fd: BorrowedFd<'_>) -> Compositor {
    let Some(pid) = peer_pid(fd) else {
        return Compositor {
            version: "unknown compositor".into(),
            ..Compositor::default()
        };
    };
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| p.display().to_string());
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| format!("pid {pid}"));
    let version = exe
        .as_deref()
        .and_then(|e| Command::new(e).arg("--version").output().ok())
        .and_then(|o| {
            let text = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| comm.clone());
    Compositor {
        pid: Some(pid),
        exe: exe.or(Some(comm)),
        version,
    }
}

fn peer_pid(fd: BorrowedFd<'_>) -> Option<u32> {
    use nix::libc;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `fd` is an open socket borrowed for the call; `cred` and `len` are live locals of
    // the size SO_PEERCRED writes (struct ucred), and `len` says so.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (r == 0 && cred.pid > 0).then_some(cred.pid as u32)
}
