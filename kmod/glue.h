/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vb2_resv C glue: what Rust-for-Linux has no abstraction for.
 *
 *  - videobuf2/V4L2 structure access (their layout depends on the kernel's configuration, and an
 *    out-of-tree Rust module has no bindgen of its own);
 *  - the ops-table copies that hook a video_device (struct v4l2_ioctl_ops, v4l2_file_operations);
 *  - tracepoint probe registration (register_trace_vb2_buf_done is a C macro expansion);
 *  - dma_fence/dma_resv/dma_buf mechanics (no Rust abstraction exists; most are static inlines);
 *  - string module parameters.
 *
 * Policy lives in Rust: which buffers get fences, when they are signaled and with which error,
 * the per-queue and per-buffer state, counters and debugfs. Every function below is called from
 * Rust (kmod/ffi.rs declares them) and states its contract: the context it may be called from,
 * what it takes, and what it returns. "Process context" means may sleep.
 */
#ifndef VB2_RESV_GLUE_H
#define VB2_RESV_GLUE_H

#include <linux/spinlock_types.h>
#include <linux/types.h>

struct dma_buf;
struct dma_fence;
struct file;
struct video_device;
struct vb2_queue;
struct vb2_buffer;
struct vb2r_hooks;

/* The module version: modinfo shows it, and the module logs it at load (vb2r_version()). */
#define VB2R_VERSION "0.2.0"

/* Most planes a V4L2 buffer can have (VIDEO_MAX_PLANES). */
#define VB2R_MAX_PLANES 8

/*
 * vb2r_version() - VB2R_VERSION as a NUL-terminated string.
 * Context: any.
 */
const char *vb2r_version(void);

/*
 * vb2r_param_mode() / vb2r_param_attach() - the raw text of the module parameters.
 *
 * Rust has no string module parameters (and 6.12 has no Rust parameters at all), so the storage
 * is declared here with module_param_string() and the text is parsed and validated in Rust at
 * module init, which fails the load with a message naming the parameter.
 * Context: any. Returns a NUL-terminated string that lives as long as the module; it never
 * changes after load (perm 0444).
 */
const char *vb2r_param_mode(void);
const char *vb2r_param_attach(void);

/* ---------------------------------------------------------------------------------------------
 * Calls from the hooked ioctls into Rust.
 *
 * Every hooked V4L2 ioctl and the release file operation of an attached node call
 * vb2r_rs_pre() before the driver's original operation and vb2r_rs_post() after it (post is not
 * called when pre failed). They run in process context, in the ioctl of @file, with the V4L2
 * core's serialization lock for that ioctl held (vdev->lock, the m2m context's q_lock or the
 * queue's lock), exactly as the original operation does; RELEASE runs with no lock held.
 */
enum vb2r_op {
	VB2R_OP_REQBUFS = 1,
	VB2R_OP_CREATE_BUFS,
	VB2R_OP_REMOVE_BUFS,
	VB2R_OP_QBUF,
	VB2R_OP_DQBUF,
	VB2R_OP_EXPBUF,
	VB2R_OP_STREAMOFF,
	VB2R_OP_RELEASE,
};

/* What a hooked call is about, decoded from its argument by C. Plain data, shared with Rust. */
struct vb2r_call {
	u32 op;          /* enum vb2r_op */
	u32 type;        /* the V4L2 buffer type (enum v4l2_buf_type) */
	u32 index;       /* buffer index; the first index for CREATE_BUFS/REMOVE_BUFS */
	u32 count;       /* REQBUFS/CREATE_BUFS/REMOVE_BUFS count */
	u32 memory;      /* V4L2_MEMORY_* */
	u32 plane;       /* EXPBUF: the plane exported */
	u32 flags;       /* QBUF/DQBUF: v4l2_buffer.flags (after the call for DQBUF) */
	u32 nplanes;     /* QBUF with V4L2_MEMORY_DMABUF: entries in fds[] */
	s32 fd;          /* EXPBUF (post): the new dma-buf fd */
	s32 fds[VB2R_MAX_PLANES]; /* QBUF with V4L2_MEMORY_DMABUF: the fd of each plane */
	struct vb2_queue *q;      /* the queue of @type that @file uses, or NULL */
	struct file *file;
	u32 owner;       /* RELEASE: 1 if closing @file releases q's buffers (it owns the queue) */
	u32 rs_armed;    /* scratch for Rust between pre and post; zeroed by C */
};

/*
 * vb2r_rs_pre() - implemented in Rust. Returns 0 to let the original operation run, or a
 * negative errno to fail the ioctl with it (the original then does not run).
 */
int vb2r_rs_pre(void *rs_node, struct vb2r_call *call);
/*
 * vb2r_rs_post() - implemented in Rust. @ret is what the original returned (and what the ioctl
 * returns).
 */
void vb2r_rs_post(void *rs_node, struct vb2r_call *call, int ret);
/*
 * vb2r_rs_buf_done() - implemented in Rust: buffer @index of @q was returned by its driver in
 * state @state (enum vb2r_buf_state) at @event_ns (ktime_get_ns(); U64_MAX when the event is
 * handled as it happens). @q is a lookup key only
 * and is never dereferenced (the queue may be gone when the event is handled late). A fence
 * armed after @event_ns is left alone.
 * Context: ANY (hard IRQ for hantro, a workqueue for its watchdog, process context for the
 * virtual drivers, an irq_work in hard IRQ with test_hardirq_signal); must not sleep. @rs_ctx is
 * the pointer given to vb2r_glue_init().
 */
void vb2r_rs_buf_done(void *rs_ctx, struct vb2_queue *q, u32 index, u32 state, u64 event_ns);

/* ---------------------------------------------------------------------------------------------
 * Module-wide registration.
 */

/*
 * vb2r_glue_init() - register the vb2_buf_done tracepoint probe with @rs_ctx as its data. The
 * probe reads the buffer's index and state and calls vb2r_rs_buf_done() in place; with the
 * test_hardirq_signal parameter set it hands the event to an irq_work (hard IRQ) instead (a test
 * aid: none of the virtual drivers returns buffers in hard IRQ as hantro does), or handles it
 * in place when all of its 64 event slots are busy.
 * Context: process (module init). Returns 0 or a negative errno.
 */
int vb2r_glue_init(void *rs_ctx);

/*
 * vb2r_glue_exit() - unregister the probe and wait until no probe call is running
 * (tracepoint_synchronize_unregister()), then wait until no task can still be inside, or about
 * to enter, a hook wrapper: an RCU-tasks grace period covers a task that loaded our function
 * pointer from a table just before it was restored, and the in-flight counter covers the
 * wrappers already running (a blocked DQBUF keeps this waiting until it returns; a line is
 * logged every 5 s while it waits).
 * Pending test_hardirq_signal irq_works are waited for (irq_work_sync()) before it returns.
 * Context: process (module exit), after every hook was removed with vb2r_hooks_remove().
 */
void vb2r_glue_exit(void);

/* ---------------------------------------------------------------------------------------------
 * Nodes: finding, pinning and hooking a video_device.
 */

/*
 * vb2r_vdev_get_from_fd() / vb2r_vdev_get_from_path() - the video_device behind a V4L2 fd or
 * a device node path, pinned: its driver module cannot be unloaded and the struct stays
 * allocated until vb2r_vdev_put().
 * The path is checked to be a V4L2 character device (major 81) before it is opened, so that
 * naming another device never runs that device's open().
 * Refuses with -EBADF (bad fd), -ENOENT (no such path), -ENOTTY (not a V4L2 node), -EINVAL
 * (a V4L2 node that is not a video capture or mem2mem node driven by videobuf2 ioctls) or
 * -ENODEV (the driver is going away). On error returns NULL and sets *err.
 * Context: process.
 */
struct video_device *vb2r_vdev_get_from_fd(int fd, int *err);
struct video_device *vb2r_vdev_get_from_path(const char *path, int *err);

/*
 * vb2r_vdev_put() - drop what vb2r_vdev_get_from_*() took.
 * Context: process.
 */
void vb2r_vdev_put(struct video_device *vdev);

/*
 * vb2r_vdev_name() - the node name ("video3") into @buf (NUL-terminated, truncated to @len).
 * vb2r_vdev_driver() - the name of the driver bound to the node's parent device (what
 * VIDIOC_QUERYCAP reports for the drivers we know), or the owning module's name.
 * Context: any; @vdev pinned.
 */
void vb2r_vdev_name(struct video_device *vdev, char *buf, size_t len);
void vb2r_vdev_driver(struct video_device *vdev, char *buf, size_t len);

/*
 * vb2r_hooks_get() - the hook tables for @vdev: copies of its v4l2_file_operations and
 * v4l2_ioctl_ops in which release, reqbufs, create_bufs, remove_bufs, qbuf, dqbuf, expbuf and
 * streamoff (those the driver has) are replaced by wrappers that call vb2r_rs_pre/post() with
 * @rs_node around the original. Entries the driver leaves NULL stay NULL, so the node's
 * valid_ioctls (computed at registration) still match. Reuses the tables already made for
 * @vdev, refreshing their copy of the original operations. Tables live until vb2r_glue_exit().
 * Context: process. Returns NULL on -ENOMEM.
 */
struct vb2r_hooks *vb2r_hooks_get(struct video_device *vdev, void *rs_node);

/*
 * vb2r_hooks_install() / vb2r_hooks_remove() - point @vdev at our tables, or back at the
 * driver's. The V4L2 core reads these pointers on every call, so the switch takes effect for
 * the next ioctl; a call already past that read finishes with the table it read.
 * Context: process; serialized by the caller.
 */
void vb2r_hooks_install(struct vb2r_hooks *h);
void vb2r_hooks_remove(struct vb2r_hooks *h);

/* ---------------------------------------------------------------------------------------------
 * Queues and buffers.
 */

/*
 * vb2r_queue_max_buffers() - q->max_num_buffers: the bound on buffer indices.
 * Context: any; @q alive.
 */
u32 vb2r_queue_max_buffers(struct vb2_queue *q);

/* Buffer states as vb2r_buffer_state() reports them. */
enum vb2r_buf_state {
	VB2R_BUF_DONE = 0,    /* the driver returned it with data */
	VB2R_BUF_ERROR = 1,   /* the driver returned it with V4L2_BUF_FLAG_ERROR */
	VB2R_BUF_QUEUED = 2,  /* returned to the queued state (start_streaming failed) */
	VB2R_BUF_OTHER = 3,
};

/*
 * vb2r_buffer_planes() - the number of planes of buffer @index of @q, or 0 if there is none.
 * Context: process, with the queue's lock held (an ioctl of the queue).
 */
u32 vb2r_buffer_planes(struct vb2_queue *q, u32 index);

/*
 * vb2r_buffer_imported_dmabuf() - for a V4L2_MEMORY_DMABUF queue, the dma-buf attached to
 * @plane of buffer @index, with a reference taken; NULL if there is none.
 * Context: process, with the queue's lock held.
 */
struct dma_buf *vb2r_buffer_imported_dmabuf(struct vb2_queue *q, u32 index, u32 plane);

/* ---------------------------------------------------------------------------------------------
 * dma-buf, dma_resv and dma_fence mechanics.
 */

/*
 * vb2r_dmabuf_get() - dma_buf_get(@fd): a reference, or NULL if @fd is not a dma-buf.
 * vb2r_dmabuf_get_export() - the same, but only if the dma-buf is an export of @plane of buffer
 * @index of @q (its priv is that plane's mem_priv, as every vb2 allocator sets it): an fd
 * closed and reused under us is refused rather than fenced.
 * vb2r_dmabuf_put() - drop the reference.
 * Context: process; _get_export with the queue's lock held.
 */
struct dma_buf *vb2r_dmabuf_get(int fd);
struct dma_buf *vb2r_dmabuf_get_export(int fd, struct vb2_queue *q, u32 index, u32 plane);
void vb2r_dmabuf_put(struct dma_buf *dmabuf);

/*
 * vb2r_fence_context() - a new fence context (dma_fence_context_alloc(1)).
 * Context: any.
 */
u64 vb2r_fence_context(void);

/*
 * vb2r_fence_create() - a new unsignaled dma_fence on @context with @seqno, driver name
 * "vb2_resv" and timeline name @timeline (copied, truncated to 47 bytes). Returns it with one
 * reference, or NULL on -ENOMEM.
 * Before 7.2 (fence ops not detached on signal, no inline lock) the fence also holds a reference
 * on this module until it is released, and NULL is returned while the module is unloading.
 * Seqnos on one context must be signaled in order (drm_sched keeps the latest per context).
 * Context: process (allocates with GFP_KERNEL).
 */
struct dma_fence *vb2r_fence_create(u64 context, u64 seqno, const char *timeline);

/*
 * vb2r_fence_attach() - add @fence to @dmabuf's reservation object with DMA_RESV_USAGE_WRITE:
 * takes the resv lock, reserves a slot and adds the fence in one locked section (a fence of the
 * same context already there is replaced, as dma_resv_add_fence() does).
 * Context: process, may sleep on the resv lock; the caller may hold the V4L2 queue lock (vb2
 * itself takes resv locks under it when it maps imported buffers). Returns 0 or -ENOMEM / -EINTR.
 */
int vb2r_fence_attach(struct dma_buf *dmabuf, struct dma_fence *fence);

/*
 * vb2r_fence_signal() - set @error (0, -EIO, -ECANCELED, ...) and signal @fence, inside a
 * dma_fence_begin_signalling()/dma_fence_end_signalling() section so that lockdep checks the
 * signalling path. Signalling twice is harmless (the second is a no-op).
 * Context: any, no lock of ours held (fence callbacks run from here).
 */
void vb2r_fence_signal(struct dma_fence *fence, int error);

/*
 * vb2r_fence_get() - take another reference; returns @fence. Context: any.
 * vb2r_fence_put() - drop a reference. Context: any.
 * vb2r_fence_signaled() - whether @fence is signaled. Context: any.
 */
struct dma_fence *vb2r_fence_get(struct dma_fence *fence);
void vb2r_fence_put(struct dma_fence *fence);
bool vb2r_fence_signaled(struct dma_fence *fence);

/*
 * vb2r_ktime_ns() - ktime_get_ns(). Context: any.
 */
u64 vb2r_ktime_ns(void);

/* ---------------------------------------------------------------------------------------------
 * 6.12 only (kmod/glue_612.c, linked by Kbuild for 6.12; kmod/k612.rs wraps these). 6.12's
 * Rust-for-Linux has no IRQ-safe spinlock, no debugfs and no misc device abstraction. Policy
 * stays in Rust: the files' text and the ioctls' meaning come from the callbacks below.
 */
struct seq_file;
struct dentry;

/*
 * vb2r_spin_lock_irqsave() - spin_lock_irqsave(@lock): returns the saved interrupt state for
 * vb2r_spin_unlock_irqrestore(). The lock is initialised by Rust (the kernel's
 * __spin_lock_init() helper, with a lockdep class of ours).
 * Context: any (the vb2_buf_done probe may run in hard IRQ); must be paired on the same CPU.
 */
unsigned long vb2r_spin_lock_irqsave(spinlock_t *lock);
void vb2r_spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags);

/*
 * vb2r_debugfs_dir() - debugfs_create_dir(@name) at the debugfs root.
 * vb2r_debugfs_file() - a read-only (0444) file @name in @dir whose every read shows what
 * vb2r_rs_debugfs_show(@rs_file, m) writes (a single_open() seq_file). @rs_file must stay valid
 * until vb2r_debugfs_remove() of the file has returned.
 * vb2r_debugfs_remove() - remove a file or a directory with everything in it; waits for readers
 * running in it (debugfs_create_file()'s proxy), so @rs_file may be freed afterwards.
 * Both creators return what debugfs returns (an ERR_PTR if debugfs is unavailable); every
 * function here accepts such a value, as debugfs does, so a missing debugfs is not an error.
 * Context: process.
 */
struct dentry *vb2r_debugfs_dir(const char *name);
struct dentry *vb2r_debugfs_file(struct dentry *dir, const char *name, void *rs_file);
void vb2r_debugfs_remove(struct dentry *dentry);
/*
 * vb2r_rs_debugfs_show() - implemented in Rust: write the text of @rs_file's file into @m.
 * Returns 0 or a negative errno. Context: process (a read of the file).
 */
int vb2r_rs_debugfs_show(void *rs_file, struct seq_file *m);
/*
 * vb2r_seq_write() - seq_write(): append @len bytes to @m; -1 when its buffer is full (the
 * seq_file core then retries the show with a bigger buffer). Context: inside a show.
 */
int vb2r_seq_write(struct seq_file *m, const char *buf, size_t len);

/*
 * vb2r_misc_register() - register the misc device "vb2_resv" (dynamic minor, owned by this
 * module) whose ioctls, native and compat (compat_ptr_ioctl), go to vb2r_rs_control_ioctl().
 * Returns 0 or a negative errno. vb2r_misc_deregister() - remove it (an open file of it holds a
 * reference on this module, its owner, so none is open when the module unloads).
 * Context: process.
 */
int vb2r_misc_register(void);
void vb2r_misc_deregister(void);
/*
 * vb2r_rs_control_ioctl() - implemented in Rust (kmod/control.rs): one ioctl of /dev/vb2_resv.
 * Returns 0 or a negative errno. Context: process.
 */
long vb2r_rs_control_ioctl(unsigned int cmd, unsigned long arg);

#endif
