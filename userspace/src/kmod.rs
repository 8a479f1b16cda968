//! The `/dev/vb2_resv` control device (kmod/control.rs defines the same numbers).

use crate::report;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

pub const CONTROL_DEV: &str = "/dev/vb2_resv";
const MAGIC: u8 = 0xf6;

nix::ioctl_write_int_bad!(ioc_attach, nix::request_code_write!(MAGIC, 1, 4));
nix::ioctl_write_int_bad!(ioc_detach, nix::request_code_write!(MAGIC, 2, 4));
nix::ioctl_write_int_bad!(ioc_set_mode, nix::request_code_write!(MAGIC, 3, 4));
nix::ioctl_read!(ioc_get_mode, MAGIC, 4, u32);
nix::ioctl_readwrite!(ioc_sync_file, MAGIC, 5, SyncFileArg);

/// `struct vb2_resv_sync_file` (kmod/control.rs).
#[repr(C)]
#[derive(Default)]
struct SyncFileArg {
    v4l2_fd: i32,
    type_: u32,
    index: u32,
    fd: i32,
    flags: u32,
    reserved: u32,
}

/// The module's modes, numbered as `VB2_RESV_IOC_SET_MODE` takes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Off = 0,
    Dqbuf = 1,
    Queue = 2,
    Strict = 3,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "off" => Some(Mode::Off),
            "dqbuf" => Some(Mode::Dqbuf),
            "queue" => Some(Mode::Queue),
            "strict" => Some(Mode::Strict),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Dqbuf => "dqbuf",
            Mode::Queue => "queue",
            Mode::Strict => "strict",
        }
    }
}

/// An open control device.
pub struct Control(File);

impl Control {
    pub fn open() -> Result<Control> {
        File::options()
            .read(true)
            .write(true)
            .open(CONTROL_DEV)
            .map(Control)
            .with_context(|| format!("cannot open {CONTROL_DEV} (is vb2_resv loaded?)"))
    }

    /// Attaches the module to the video node `v4l2_fd` is open on.
    pub fn attach(&self, v4l2_fd: RawFd) -> nix::Result<()> {
        // SAFETY: the ioctl takes the fd by value.
        unsafe { ioc_attach(self.0.as_raw_fd(), v4l2_fd) }.map(drop)
    }

    pub fn detach(&self, v4l2_fd: RawFd) -> nix::Result<()> {
        // SAFETY: the ioctl takes the fd by value.
        unsafe { ioc_detach(self.0.as_raw_fd(), v4l2_fd) }.map(drop)
    }

    pub fn set_mode(&self, m: Mode) -> nix::Result<()> {
        self.set_mode_raw(m as i32)
    }

    /// VB2_RESV_IOC_SET_MODE with any number (the module refuses unknown ones with EINVAL).
    pub fn set_mode_raw(&self, m: i32) -> nix::Result<()> {
        // SAFETY: the ioctl takes the mode by value.
        unsafe { ioc_set_mode(self.0.as_raw_fd(), m) }.map(drop)
    }

    /// VB2_RESV_IOC_SYNC_FILE: a sync_file of buffer `index` of the `type_` queue of the V4L2
    /// fd `v4l2_fd` (its pending vb2_resv fence, or a signaled one), and whether it was pending.
    pub fn sync_file(
        &self,
        v4l2_fd: RawFd,
        type_: u32,
        index: u32,
    ) -> nix::Result<(OwnedFd, bool)> {
        let mut a = SyncFileArg {
            v4l2_fd,
            type_,
            index,
            ..Default::default()
        };
        // SAFETY: `a` is the ioctl's argument struct, valid for the call.
        unsafe { ioc_sync_file(self.0.as_raw_fd(), &mut a) }?;
        // SAFETY: the ioctl returned a new fd that nothing else owns.
        Ok((unsafe { OwnedFd::from_raw_fd(a.fd) }, a.flags & 1 != 0))
    }

    pub fn mode(&self) -> nix::Result<u32> {
        let mut m = 0u32;
        // SAFETY: `m` is a valid u32 out-parameter.
        unsafe { ioc_get_mode(self.0.as_raw_fd(), &mut m) }?;
        Ok(m)
    }
}

/// The vb2_resv attachment of this run; detaches on drop if this run attached, and sets the
/// module's (module-wide) mode back if this run changed it.
pub(crate) struct ModuleGuard {
    ctl: Option<Control>,
    /// A dup of the decoder's fd: detach works whatever order the rest is dropped in.
    dev: Option<File>,
    attached_here: bool,
    /// The mode (VB2_RESV_IOC_GET_MODE's number) before this run set its own.
    restore: Option<u32>,
    pub(crate) info: report::ModuleInfo,
}

fn mode_name(m: u32) -> String {
    match m {
        0 => "off".to_string(),
        1 => "dqbuf".to_string(),
        2 => "queue".to_string(),
        3 => "strict".to_string(),
        x => x.to_string(),
    }
}

impl ModuleGuard {
    pub(crate) fn setup(dev: &File, mode: Option<Mode>) -> Result<ModuleGuard> {
        let loaded = Path::new("/sys/module/vb2_resv").exists();
        if !loaded {
            if let Some(m) = mode {
                bail!(
                    "--mode {} needs the vb2_resv module, which is not loaded",
                    m.name()
                );
            }
            return Ok(ModuleGuard {
                ctl: None,
                dev: None,
                attached_here: false,
                restore: None,
                info: report::ModuleInfo {
                    loaded: false,
                    attach: "no".into(),
                    mode: None,
                    mode_before: None,
                },
            });
        }
        let ctl = Control::open()?;
        let mut guard = ModuleGuard {
            ctl: None,
            dev: None,
            attached_here: false,
            restore: None,
            info: report::ModuleInfo {
                loaded: true,
                attach: "no".into(),
                mode: None,
                mode_before: None,
            },
        };
        if let Some(m) = mode {
            let before = ctl.mode().context("VB2_RESV_IOC_GET_MODE")?;
            ctl.set_mode(m)
                .with_context(|| format!("VB2_RESV_IOC_SET_MODE({})", m.name()))?;
            guard.restore = Some(before);
            guard.info.mode_before = Some(mode_name(before));
        }
        // From here on the guard owns the control device: an early return sets the mode back.
        guard.ctl = Some(ctl);
        guard.dev = Some(dev.try_clone().context("dup of the decoder fd")?);
        let ctl = guard.ctl.as_ref().expect("just set");
        let attach = match ctl.attach(dev.as_raw_fd()) {
            Ok(()) => "attached",
            Err(nix::errno::Errno::EBUSY) | Err(nix::errno::Errno::EEXIST) => "already",
            Err(e) => bail!("vb2_resv cannot attach to the decoder: VB2_RESV_IOC_ATTACH: {e}"),
        };
        guard.info.mode = ctl.mode().ok().map(mode_name);
        guard.attached_here = attach == "attached";
        guard.info.attach = attach.into();
        Ok(guard)
    }
}

impl Drop for ModuleGuard {
    fn drop(&mut self) {
        if let (true, Some(ctl), Some(dev)) = (self.attached_here, &self.ctl, &self.dev) {
            if let Err(e) = ctl.detach(dev.as_raw_fd()) {
                eprintln!("warning: vb2_resv detach: {e}");
            }
        }
        if let (Some(ctl), Some(m)) = (&self.ctl, self.restore) {
            if let Err(e) = ctl.set_mode_raw(m as i32) {
                eprintln!(
                    "warning: vb2_resv: cannot set the mode back to {}: {e}",
                    mode_name(m)
                );
            }
        }
    }
}

const WAIT_READERS: &str = "/sys/module/vb2_resv/parameters/wait_readers";

/// The module's `wait_readers` parameter (the decoder waits for other devices' fences on a
/// CAPTURE buffer before the hardware gets it back), or None when the module is not loaded.
pub fn wait_readers() -> Result<Option<bool>> {
    if !Path::new("/sys/module/vb2_resv").exists() {
        return Ok(None);
    }
    let v = std::fs::read_to_string(WAIT_READERS)
        .with_context(|| format!("cannot read {WAIT_READERS}"))?;
    Ok(Some(matches!(v.trim(), "Y" | "y" | "1")))
}

/// Sets `wait_readers` (module-wide); the module must be loaded.
pub fn set_wait_readers(on: bool) -> Result<()> {
    if !Path::new("/sys/module/vb2_resv").exists() {
        bail!("--wait-readers needs the vb2_resv module, which is not loaded");
    }
    std::fs::write(WAIT_READERS, if on { "Y" } else { "N" })
        .with_context(|| format!("cannot write {WAIT_READERS}"))
}

/// Sets `wait_readers` for a scope and puts the old value back on drop.
pub struct WaitReadersGuard(Option<bool>);

impl WaitReadersGuard {
    pub fn set(on: Option<bool>) -> Result<WaitReadersGuard> {
        let Some(on) = on else {
            return Ok(WaitReadersGuard(None));
        };
        let before = wait_readers()?;
        set_wait_readers(on)?;
        Ok(WaitReadersGuard(before))
    }
}

impl Drop for WaitReadersGuard {
    fn drop(&mut self) {
        if let Some(b) = self.0 {
            if let Err(e) = set_wait_readers(b) {
                eprintln!("warning: vb2_resv: cannot set wait_readers back to {b}: {e:#}");
            }
        }
    }
}
