// SPDX-License-Identifier: GPL-2.0

//! `/dev/vb2_resv`: attach, detach and mode control at run time.
//!
//! | ioctl                    | argument            | effect                                   |
//! |--------------------------|---------------------|------------------------------------------|
//! | `VB2_RESV_IOC_ATTACH`    | `int`: a V4L2 fd    | attach to that fd's video node           |
//! | `VB2_RESV_IOC_DETACH`    | `int`: a V4L2 fd    | detach from it                           |
//! | `VB2_RESV_IOC_SET_MODE`  | `__u32`: 0/1/2/3    | mode off / dqbuf / queue / strict        |
//! | `VB2_RESV_IOC_GET_MODE`  | `__u32 *`           | read the mode                            |
//! | `VB2_RESV_IOC_SYNC_FILE` | `struct vb2_resv_sync_file *` | a sync_file of a buffer's fence |
//!
//! `struct vb2_resv_sync_file { __s32 v4l2_fd; __u32 type; __u32 index; __s32 fd; __u32 flags;
//! __u32 reserved; }`: in, a V4L2 fd, a buffer type and index; out, `fd`, a new O_CLOEXEC
//! sync_file holding the buffer's pending vb2_resv fence (the one its current job signals), or
//! an already signaled fence when it has none, and `flags` bit 0 set when the fence was pending.
//! The explicit-sync path the dma-buf maintainers prefer: a player or compositor waits on it
//! (poll, or as a syncobj/in-fence) instead of relying on implicit sync. Errors: `-EBADF`,
//! `-ENOTTY` (not a V4L2 fd), `-EINVAL` (no such queue on that fd, or an index the module has
//! no state for), `-ENOENT` (the module has not seen that queue: not attached, or no QBUF/EXPBUF
//! on it yet).
//!
//! The numbers are `_IOW('v' + 0x80 = 0xf6, nr, int)` style: see `userspace/src/kmod.rs`, which
//! defines the same values for the verifier and the tests. Errors: `-ENOTTY` (not a V4L2 node),
//! `-EINVAL` (not a video capture/mem2mem node, or a bad mode), `-EBUSY` (already attached),
//! `-ENOENT` (detach from a node that is not attached), `-EBADF`.
//!
//! The device is `kernel::miscdevice` on 7.x; on 6.12, which has no such abstraction, it is
//! registered in C (`glue_612.c`, wrapped by `k612::MiscRegistration`) and its ioctls come to
//! [`dispatch`] through `vb2r_rs_control_ioctl()`.

use crate::params::Mode;
use kernel::ioctl::{_IOR, _IOW, _IOWR};
// 6.12 keeps these in kernel::types; 7.x in kernel::transmute.
use kernel::prelude::*;
#[cfg(not(vb2r_k612))]
use kernel::transmute::{AsBytes, FromBytes};
#[cfg(vb2r_k612)]
use kernel::types::{AsBytes, FromBytes};
use kernel::uaccess::UserSlice;
#[cfg(not(vb2r_k612))]
use kernel::{
    fs::File,
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
};

const MAGIC: u32 = 0xf6;
pub(crate) const VB2_RESV_IOC_ATTACH: u32 = _IOW::<i32>(MAGIC, 1);
pub(crate) const VB2_RESV_IOC_DETACH: u32 = _IOW::<i32>(MAGIC, 2);
pub(crate) const VB2_RESV_IOC_SET_MODE: u32 = _IOW::<u32>(MAGIC, 3);
pub(crate) const VB2_RESV_IOC_GET_MODE: u32 = _IOR::<u32>(MAGIC, 4);
pub(crate) const VB2_RESV_IOC_SYNC_FILE: u32 = _IOWR::<SyncFileArg>(MAGIC, 5);

/// `struct vb2_resv_sync_file`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct SyncFileArg {
    v4l2_fd: i32,
    type_: u32,
    index: u32,
    fd: i32,
    flags: u32,
    reserved: u32,
}

// SAFETY: plain integers, any bit pattern is valid.
unsafe impl FromBytes for SyncFileArg {}
// SAFETY: plain integers, no padding.
unsafe impl AsBytes for SyncFileArg {}

/// `/dev/vb2_resv` while this lives.
#[cfg(not(vb2r_k612))]
pub(crate) type Registration = MiscDeviceRegistration<Control>;
/// `/dev/vb2_resv` while this lives.
#[cfg(vb2r_k612)]
pub(crate) type Registration = crate::k612::MiscRegistration;

#[cfg(not(vb2r_k612))]
pub(crate) struct Control;

#[cfg(not(vb2r_k612))]
pub(crate) fn register() -> impl PinInit<Registration, Error> {
    MiscDeviceRegistration::register(MiscDeviceOptions { name: c"vb2_resv" })
}

#[cfg(vb2r_k612)]
pub(crate) fn register() -> impl PinInit<Registration, Error> {
    crate::k612::MiscRegistration::register()
}

#[cfg(not(vb2r_k612))]
#[vtable]
impl MiscDevice for Control {
    type Ptr = KBox<Self>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        Ok(KBox::new(Control, GFP_KERNEL)?)
    }

    fn ioctl(_me: &Control, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        dispatch(cmd, arg)
    }
}

/// One ioctl of `/dev/vb2_resv` (process context).
fn dispatch(cmd: u32, arg: usize) -> Result<isize> {
    let st = crate::state::state();
    match cmd {
        // The fd is passed by value: `ioctl(ctl, VB2_RESV_IOC_ATTACH, fd)`.
        VB2_RESV_IOC_ATTACH => {
            let vdev = crate::ffi::Vdev::from_fd(arg as i32)?;
            st.attach(vdev)?;
        }
        VB2_RESV_IOC_DETACH => {
            let vdev = crate::ffi::Vdev::from_fd(arg as i32)?;
            st.detach(&vdev)?;
        }
        VB2_RESV_IOC_SET_MODE => {
            let m = Mode::try_from_index(arg as u32).ok_or(EINVAL)?;
            st.set_mode(m);
        }
        VB2_RESV_IOC_GET_MODE => {
            let mut w = UserSlice::new(user_ptr(arg), 4).writer();
            w.write(&st.mode().index())?;
        }
        VB2_RESV_IOC_SYNC_FILE => {
            let size = core::mem::size_of::<SyncFileArg>();
            let (mut r, mut w) = UserSlice::new(user_ptr(arg), size).reader_writer();
            let mut a: SyncFileArg = r.read()?;
            let (fd, pending) = st.sync_file(a.v4l2_fd, a.type_, a.index)?;
            a.fd = fd;
            a.flags = u32::from(pending);
            w.write(&a)?;
        }
        _ => return Err(ENOTTY),
    }
    Ok(0)
}

#[cfg(not(vb2r_k612))]
fn user_ptr(arg: usize) -> kernel::uaccess::UserPtr {
    kernel::uaccess::UserPtr::from_addr(arg)
}

/// 6.12's `UserPtr` is the address itself.
#[cfg(vb2r_k612)]
fn user_ptr(arg: usize) -> kernel::uaccess::UserPtr {
    arg
}

/// # Safety
///
/// Called by glue_612.c's misc device only, in an ioctl of `/dev/vb2_resv`: the device is
/// registered only while the module state lives (glue.h).
#[cfg(vb2r_k612)]
#[no_mangle]
unsafe extern "C" fn vb2r_rs_control_ioctl(
    cmd: core::ffi::c_uint,
    arg: core::ffi::c_ulong,
) -> core::ffi::c_long {
    match dispatch(cmd, arg as usize) {
        Ok(v) => v as core::ffi::c_long,
        Err(e) => e.to_errno() as core::ffi::c_long,
    }
}
