// SPDX-License-Identifier: GPL-2.0

//! Linux 6.12 LTS: what 6.12's Rust-for-Linux lacks, in the shapes the rest of the module uses
//! on 7.x, so that the logic is the same source on both. Compiled with `--cfg vb2r_k612` (Kbuild
//! sets it for 6.12) and, for its IRQ-safe spinlock only, with `--cfg vb2r_no_spinlock_irq`
//! (6.12 to 7.2: `kernel::sync::SpinLockIrq` is 7.3+); everything else here is `vb2r_k612` only.
//!
//! - [`SpinLockIrq`] / [`new_spinlock_irq!`]: a `kernel::sync::lock::Lock` backend whose lock
//!   disables interrupts (`spin_lock_irqsave()` in `glue_612.c`): the vb2_buf_done probe that
//!   takes `Queue::fences` and `State::queues` may run in hard IRQ. 7.x has
//!   `kernel::sync::SpinLockIrq`.
//! - [`debugfs`]: `Dir` and `read_callback_file()` over C debugfs plumbing whose reads call back
//!   into Rust for the text (7.x: `kernel::debugfs`).
//! - [`MiscRegistration`]: the `/dev/vb2_resv` misc device, registered in C, its ioctls handed to
//!   `control::dispatch()` (7.x: `kernel::miscdevice`).
//! - [`KVecExt`]: the `KVec` methods 6.13+ added that the module uses.

use core::ffi::c_ulong;
#[cfg(vb2r_k612)]
use core::ffi::{c_int, c_void};
#[cfg(vb2r_k612)]
use core::marker::PhantomPinned;
use kernel::bindings;
use kernel::ffi::c_char;
#[cfg(vb2r_k612)]
use kernel::prelude::*;

#[cfg(vb2r_k612)]
/// `struct dentry`, `struct seq_file` (handled by pointer only).
#[repr(C)]
pub(crate) struct Dentry {
    _p: [u8; 0],
}
#[cfg(vb2r_k612)]
#[repr(C)]
pub(crate) struct SeqFile {
    _p: [u8; 0],
}

extern "C" {
    fn vb2r_spin_lock_irqsave(lock: *mut bindings::spinlock_t) -> c_ulong;
    fn vb2r_spin_unlock_irqrestore(lock: *mut bindings::spinlock_t, flags: c_ulong);
    #[cfg(not(vb2r_k612))]
    fn vb2r_spin_trylock_irqsave(lock: *mut bindings::spinlock_t, flags: *mut c_ulong) -> bool;
}

#[cfg(vb2r_k612)]
extern "C" {
    fn vb2r_debugfs_dir(name: *const c_char) -> *mut Dentry;
    fn vb2r_debugfs_file(
        dir: *mut Dentry,
        name: *const c_char,
        rs_file: *mut c_void,
    ) -> *mut Dentry;
    fn vb2r_debugfs_remove(dentry: *mut Dentry);
    fn vb2r_seq_write(m: *mut SeqFile, buf: *const c_char, len: usize) -> c_int;
    fn vb2r_misc_register() -> c_int;
    fn vb2r_misc_deregister();
}

// ------------------------------------------------------------------------------------------
// The IRQ-safe spinlock.

/// A spinlock that disables interrupts while held (6.12 has only `SpinLock`, which does not).
pub(crate) type SpinLockIrq<T> = kernel::sync::lock::Lock<T, SpinLockIrqBackend>;

/// The [`SpinLockIrq`] backend: a `spinlock_t` taken with `spin_lock_irqsave()`.
pub(crate) struct SpinLockIrqBackend;

// SAFETY: `lock` and `unlock` are spin_lock_irqsave()/spin_unlock_irqrestore() on the same
// `spinlock_t`, which `init` initialises; the guard state is the saved interrupt state, handed
// back to the unlock of the same lock. Mutual exclusion is the spinlock's.
unsafe impl kernel::sync::lock::Backend for SpinLockIrqBackend {
    type State = bindings::spinlock_t;
    type GuardState = c_ulong;

    unsafe fn init(ptr: *mut Self::State, name: *const c_char, key: *mut bindings::lock_class_key) {
        // SAFETY: the caller gives a `ptr` valid for writes and `name`/`key` valid forever.
        unsafe { bindings::__spin_lock_init(ptr, name, key) }
    }

    unsafe fn lock(ptr: *mut Self::State) -> Self::GuardState {
        // SAFETY: the caller gives an initialised lock.
        unsafe { vb2r_spin_lock_irqsave(ptr) }
    }

    unsafe fn unlock(ptr: *mut Self::State, guard_state: &Self::GuardState) {
        // SAFETY: the caller holds the lock, taken by `lock`, which returned `guard_state`.
        unsafe { vb2r_spin_unlock_irqrestore(ptr, *guard_state) }
    }

    // 7.0 to 7.2 (`vb2r_no_spinlock_irq` without `vb2r_k612`): their `Backend` also requires
    // these two (6.12's has neither).
    #[cfg(not(vb2r_k612))]
    unsafe fn try_lock(ptr: *mut Self::State) -> Option<Self::GuardState> {
        let mut flags: c_ulong = 0;
        // SAFETY: the caller gives an initialised lock; `flags` is valid for writes.
        unsafe { vb2r_spin_trylock_irqsave(ptr, &mut flags) }.then_some(flags)
    }

    #[cfg(not(vb2r_k612))]
    unsafe fn assert_is_held(ptr: *mut Self::State) {
        // SAFETY: the caller gives an initialised lock.
        unsafe { bindings::spin_assert_is_held(ptr) }
    }
}

/// Creates a [`SpinLockIrq`] initialiser with a lock class of its own (7.x's macro of the same
/// name).
macro_rules! new_spinlock_irq {
    ($inner:expr $(,)?) => {
        $crate::k612::SpinLockIrq::new(
            $inner,
            ::kernel::optional_name!(),
            ::kernel::static_lock_class!(),
        )
    };
}
pub(crate) use new_spinlock_irq;

// ------------------------------------------------------------------------------------------
// debugfs.

#[cfg(vb2r_k612)]
/// A name debugfs can take: the C strings the module has at hand.
pub(crate) trait DebugfsName {
    fn name_ptr(&self) -> *const c_char;
}

#[cfg(vb2r_k612)]
impl DebugfsName for core::ffi::CStr {
    fn name_ptr(&self) -> *const c_char {
        self.as_ptr().cast()
    }
}

#[cfg(vb2r_k612)]
impl DebugfsName for kernel::str::CStr {
    fn name_ptr(&self) -> *const c_char {
        self.as_char_ptr()
    }
}

#[cfg(vb2r_k612)]
impl DebugfsName for kernel::str::CString {
    fn name_ptr(&self) -> *const c_char {
        self.as_char_ptr()
    }
}

#[cfg(vb2r_k612)]
pub(crate) mod debugfs {
    use super::{
        vb2r_debugfs_dir, vb2r_debugfs_file, vb2r_debugfs_remove, vb2r_seq_write, DebugfsName,
        Dentry, SeqFile,
    };
    use core::ffi::{c_int, c_void};
    use core::fmt;
    use core::marker::PhantomPinned;
    use kernel::prelude::*;

    /// A debugfs directory at the root, removed with everything in it when dropped.
    pub(crate) struct Dir(*mut Dentry);

    // SAFETY: the dentry is only passed to debugfs, which has its own locking.
    unsafe impl Send for Dir {}
    // SAFETY: see above; `&Dir` only creates files in it.
    unsafe impl Sync for Dir {}

    impl Dir {
        /// Creates `name` at the debugfs root (a missing debugfs gives a `Dir` that makes
        /// nothing, as 7.x's does).
        pub(crate) fn new<N: DebugfsName + ?Sized>(name: &N) -> Self {
            // SAFETY: `name` is NUL-terminated; debugfs copies it.
            Dir(unsafe { vb2r_debugfs_dir(name.name_ptr()) })
        }

        /// A read-only file `name` in this directory whose reads show what `f` writes for
        /// `data`. The file is removed when the returned [`File`] is dropped.
        pub(crate) fn read_callback_file<'a, T, F, N>(
            &'a self,
            name: &'a N,
            data: T,
            f: &'static F,
        ) -> impl PinInit<File<T>, Error> + 'a
        where
            T: Send + Sync + 'static,
            F: Fn(&T, &mut fmt::Formatter<'_>) -> fmt::Result + Send + Sync,
            N: DebugfsName + ?Sized,
        {
            let init = move |slot: *mut File<T>| {
                // SAFETY: `slot` is valid for writes and pinned (File is !Unpin): C may keep
                // its address until the file is removed, which File's Drop does first.
                unsafe {
                    slot.write(File {
                        show: show_of::<T>,
                        dentry: core::ptr::null_mut(),
                        data,
                        f,
                        _pin: PhantomPinned,
                    });
                    (*slot).dentry = vb2r_debugfs_file(self.0, name.name_ptr(), slot.cast());
                }
                Ok(())
            };
            // SAFETY: the closure initialises every field of `slot` and never fails; the
            // address given to C is the pinned one.
            unsafe { kernel::init::pin_init_from_closure(init) }
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            // SAFETY: made by vb2r_debugfs_dir(); removes what is left in it.
            unsafe { vb2r_debugfs_remove(self.0) }
        }
    }

    type ShowFn = unsafe fn(*const c_void, &mut fmt::Formatter<'_>) -> fmt::Result;

    /// A debugfs file made by [`Dir::read_callback_file`]; removed (waiting for its readers)
    /// when dropped.
    #[repr(C)]
    pub(crate) struct File<T: 'static> {
        /// First, at the address C holds: how to show this file, whatever its `T`.
        show: ShowFn,
        dentry: *mut Dentry,
        data: T,
        f: &'static (dyn Fn(&T, &mut fmt::Formatter<'_>) -> fmt::Result + Send + Sync),
        _pin: PhantomPinned,
    }

    // SAFETY: the dentry is only handed to debugfs; `data` and `f` are Send + Sync.
    unsafe impl<T: Send + Sync> Send for File<T> {}
    // SAFETY: see above.
    unsafe impl<T: Send + Sync> Sync for File<T> {}

    impl<T> Drop for File<T> {
        fn drop(&mut self) {
            // SAFETY: made by vb2r_debugfs_file(); removal waits for running reads, so none
            // uses `self` after this returns.
            unsafe { vb2r_debugfs_remove(self.dentry) }
        }
    }

    /// # Safety
    ///
    /// `p` points at a live `File<T>`.
    unsafe fn show_of<T: 'static>(p: *const c_void, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SAFETY: guaranteed by the caller.
        let file = unsafe { &*p.cast::<File<T>>() };
        (file.f)(&file.data, f)
    }

    /// `core::fmt::Write` into a seq_file.
    struct SeqWriter(*mut SeqFile);

    impl fmt::Write for SeqWriter {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            // SAFETY: inside a show of this seq_file (vb2r_rs_debugfs_show()).
            if unsafe { vb2r_seq_write(self.0, s.as_ptr().cast(), s.len()) } == 0 {
                Ok(())
            } else {
                Err(fmt::Error)
            }
        }
    }

    /// The text of one file, through its `show`.
    struct Text(*const c_void);

    impl fmt::Display for Text {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            // SAFETY: `self.0` is a live File whose first field is its ShowFn (repr(C));
            // vb2r_rs_debugfs_show() only runs while the file exists.
            unsafe {
                let show = *self.0.cast::<ShowFn>();
                show(self.0, f)
            }
        }
    }

    /// # Safety
    ///
    /// Called by glue_612.c only, for a file made by [`Dir::read_callback_file`]: `rs_file` is
    /// that `File` (alive until its removal, which waits for this call) and `m` its seq_file.
    #[no_mangle]
    unsafe extern "C" fn vb2r_rs_debugfs_show(rs_file: *mut c_void, m: *mut SeqFile) -> c_int {
        // A full buffer ends the formatting early; seq_file notices the overflow and calls
        // again with a bigger one, so that is not an error to report.
        let _ = fmt::write(&mut SeqWriter(m), format_args!("{}", Text(rs_file)));
        0
    }
}

// ------------------------------------------------------------------------------------------
// The misc device.

#[cfg(vb2r_k612)]
/// `/dev/vb2_resv` while this lives: registered in C (glue_612.c), its ioctls go to
/// `control::dispatch()` through `vb2r_rs_control_ioctl()`.
pub(crate) struct MiscRegistration {
    _pin: PhantomPinned,
}

#[cfg(vb2r_k612)]
impl MiscRegistration {
    /// Registers the device (there is one: a second registration fails with -EBUSY from the
    /// misc core).
    pub(crate) fn register() -> impl PinInit<Self, Error> {
        let init = |slot: *mut Self| {
            // SAFETY: no precondition; deregistered by Drop.
            let r = unsafe { vb2r_misc_register() };
            if r != 0 {
                return Err(Error::from_errno(r));
            }
            // SAFETY: `slot` is valid for writes.
            unsafe {
                slot.write(MiscRegistration {
                    _pin: PhantomPinned,
                })
            };
            Ok(())
        };
        // SAFETY: on success every field is written; on failure nothing was.
        unsafe { kernel::init::pin_init_from_closure(init) }
    }
}

#[cfg(vb2r_k612)]
impl Drop for MiscRegistration {
    fn drop(&mut self) {
        // SAFETY: registered by register().
        unsafe { vb2r_misc_deregister() }
    }
}

// ------------------------------------------------------------------------------------------
// KVec.

#[cfg(vb2r_k612)]
/// The `KVec` methods of 6.13+ that the module uses, with their 7.x meaning.
pub(crate) trait KVecExt<T> {
    /// Appends `v` if there is room, without allocating; gives `v` back otherwise.
    fn push_within_capacity(&mut self, v: T) -> core::result::Result<(), T>;
    /// Removes and returns the last element.
    fn pop(&mut self) -> Option<T>;
    /// Removes the element at `i`, shifting the rest down.
    fn remove(&mut self, i: usize) -> core::result::Result<T, ()>;
    /// Drops every element (the allocation stays).
    fn clear(&mut self);
    /// Inserts `v` at `i` (at most the length) if there is room, without allocating; gives
    /// `v` back otherwise.
    fn insert_within_capacity(&mut self, i: usize, v: T) -> core::result::Result<(), T>;
    /// Keeps only the elements for which `f` is true, in order.
    fn retain(&mut self, f: impl FnMut(&mut T) -> bool);
    /// Moves every element out, in order, leaving the vector empty. The allocation goes with
    /// the iterator (7.x keeps it in the vector): freeing it is IRQ-safe.
    fn drain_all(&mut self) -> kernel::alloc::kvec::IntoIter<T, kernel::alloc::allocator::Kmalloc>;
}

#[cfg(vb2r_k612)]
impl<T> KVecExt<T> for KVec<T> {
    fn push_within_capacity(&mut self, v: T) -> core::result::Result<(), T> {
        let len = self.len();
        match self.spare_capacity_mut().first_mut() {
            Some(slot) => {
                slot.write(v);
                // SAFETY: element `len` was just initialised and is within the capacity.
                unsafe { self.set_len(len + 1) };
                Ok(())
            }
            None => Err(v),
        }
    }

    fn pop(&mut self) -> Option<T> {
        let last = self.len().checked_sub(1)?;
        // SAFETY: element `last` is initialised; once the length excludes it the vector no
        // longer owns it, so reading it out moves it.
        unsafe {
            self.set_len(last);
            Some(self.as_ptr().add(last).read())
        }
    }

    fn remove(&mut self, i: usize) -> core::result::Result<T, ()> {
        if i >= self.len() {
            return Err(());
        }
        self[i..].rotate_left(1);
        self.pop().ok_or(())
    }

    fn clear(&mut self) {
        while self.pop().is_some() {}
    }

    fn insert_within_capacity(&mut self, i: usize, v: T) -> core::result::Result<(), T> {
        if i > self.len() {
            return Err(v);
        }
        self.push_within_capacity(v)?;
        self[i..].rotate_right(1);
        Ok(())
    }

    fn retain(&mut self, mut f: impl FnMut(&mut T) -> bool) {
        let mut kept = 0;
        for j in 0..self.len() {
            if f(&mut self[j]) {
                self.swap(kept, j);
                kept += 1;
            }
        }
        while self.len() > kept {
            drop(self.pop());
        }
    }

    fn drain_all(&mut self) -> kernel::alloc::kvec::IntoIter<T, kernel::alloc::allocator::Kmalloc> {
        core::mem::take(self).into_iter()
    }
}
