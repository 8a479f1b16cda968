// SPDX-License-Identifier: GPL-2.0

//! `/dev/vb2_resv`: attach, detach and mode control at run time.
//!
//! | ioctl                    | argument            | effect                                   |
//! |--------------------------|---------------------|------------------------------------------|
//! | `VB2_RESV_IOC_ATTACH`    | `int`: a V4L2 fd    | attach to that fd's video node           |
//! | `VB2_RESV_IOC_DETACH`    | `int`: a V4L2 fd    | detach from it                           |
//! | `VB2_RESV_IOC_SET_MODE`  | `__u32`: 0/1/2      | mode off / dqbuf / queue, for new QBUFs  |
//! | `VB2_RESV_IOC_GET_MODE`  | `__u32 *`           | read the mode                            |
//!
//! The numbers are `_IOW('v' + 0x80 = 0xf6, nr, int)` style: see `userspace/src/kmod.rs`, which
//! defines the same values for the verifier and the tests. Errors: `-ENOTTY` (not a V4L2 node),
//! `-EINVAL` (not a video capture/mem2mem node, or a bad mode), `-EBUSY` (already attached),
//! `-ENOENT` (detach from a node that is not attached), `-EBADF`.

use crate::params::Mode;
use kernel::fs::File;
use kernel::ioctl::{_IOR, _IOW};
use kernel::miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration};
use kernel::prelude::*;
use kernel::uaccess::UserSlice;

const MAGIC: u32 = 0xf6;
pub(crate) const VB2_RESV_IOC_ATTACH: u32 = _IOW::<i32>(MAGIC, 1);
pub(crate) const VB2_RESV_IOC_DETACH: u32 = _IOW::<i32>(MAGIC, 2);
pub(crate) const VB2_RESV_IOC_SET_MODE: u32 = _IOW::<u32>(MAGIC, 3);
pub(crate) const VB2_RESV_IOC_GET_MODE: u32 = _IOR::<u32>(MAGIC, 4);

pub(crate) struct Control;

pub(crate) fn register() -> impl PinInit<MiscDeviceRegistration<Control>, Error> {
    MiscDeviceRegistration::register(MiscDeviceOptions { name: c"vb2_resv" })
}

#[vtable]
impl MiscDevice for Control {
    type Ptr = KBox<Self>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        Ok(KBox::new(Control, GFP_KERNEL)?)
    }

    fn ioctl(_me: &Control, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        let st = crate::state();
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
                let mut w = UserSlice::new(kernel::uaccess::UserPtr::from_addr(arg), 4).writer();
                w.write(&st.mode().index())?;
            }
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }
}
