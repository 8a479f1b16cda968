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
 * vb2r_rs_pre() before the driver's original operation and vb2r_rs_post() after it, always
 * both: post learns from @ran whether the original ran (it does not when pre refused). They run
 * in process context, in the ioctl of @file, with the V4L2 core's serialization lock for that
 * ioctl held (vdev->lock, the m2m context's q_lock or the queue's lock), exactly as the original
 * operation does; RELEASE runs with no lock held. Which queue a call is about, and whether the
 * caller owns it, is decided in Rust from the accessors below.
 */
enum vb2r_op {
	VB2R_OP_REQBUFS = 1,
	VB2R_OP_REMOVE_BUFS,
	VB2R_OP_QBUF,
	VB2R_OP_DQBUF,
	VB2R_OP_EXPBUF,
	VB2R_OP_STREAMON,
	VB2R_OP_STREAMOFF,
	VB2R_OP_RELEASE,
};

/* What a hooked call is about, decoded from its argument by C. Plain data, shared with Rust. */
struct vb2r_qbuf_wait;

struct vb2r_call {
	u32 op;          /* enum vb2r_op */
	u32 type;        /* the V4L2 buffer type (enum v4l2_buf_type); RELEASE: 0 */
	u32 index;       /* buffer index; the first index for REMOVE_BUFS */
	u32 count;       /* REQBUFS/REMOVE_BUFS count (REQBUFS: as asked, before the call) */
	u32 memory;      /* V4L2_MEMORY_* (REQBUFS, QBUF, DQBUF) */
	u32 plane;       /* EXPBUF: the plane exported */
	u32 flags;       /* QBUF/DQBUF: v4l2_buffer.flags (after the call for DQBUF) */
	u32 nplanes;     /* QBUF with V4L2_MEMORY_DMABUF: entries in fds[] */
	s32 fd;          /* EXPBUF (after the call): the new dma-buf fd, or -1 */
	s32 fds[VB2R_MAX_PLANES]; /* QBUF with V4L2_MEMORY_DMABUF: the fd of each plane */
	u64 ts;          /* QBUF: v4l2_buffer.timestamp in ns (what vb2 copies for OUTPUT) */
	struct file *file;
	/*
	 * Set by Rust's pre: nonzero when fences were published in pre and the original QBUF is
	 * on their signalling path; C then runs the original inside a
	 * dma_fence_begin_signalling()/dma_fence_end_signalling() section (lockdep).
	 */
	u32 signalling;
	/* Scratch for Rust between pre and post; zeroed by C. */
	u32 rs_flags;
	u64 rs_mask;
	void *rs_queue;
	struct vb2_queue *rs_vq;
	/*
	 * Capture QBUF: the calling task's registration by vb2r_w_unlocked_ioctl() (see "Waiting
	 * for other devices' readers" below), NULL if it has none.
	 */
	struct vb2r_qbuf_wait *wait;
};

/*
 * vb2r_rs_pre() - implemented in Rust. Returns 0 to let the original operation run, or a
 * negative errno to fail the ioctl with it (the original then does not run; RELEASE ignores it).
 */
int vb2r_rs_pre(void *rs_node, struct vb2r_call *call);
/*
 * vb2r_rs_post() - implemented in Rust, after every pre. @ran: whether the original ran; @ret:
 * what the ioctl returns (the original's result, or pre's error).
 */
void vb2r_rs_post(void *rs_node, struct vb2r_call *call, bool ran, int ret);
/*
 * vb2r_rs_buf_done() - implemented in Rust: the vb2_buf_done event of buffer @index of @q.
 * In place (@vb non-NULL): the probe runs synchronously with vb2_buffer_done(), so @vb is alive
 * and vb2r_vb_state(@vb) gives the buffer's *current* state (it may have been dequeued and
 * queued again since the driver returned it). Deferred (@vb NULL, test_hardirq_signal):
 * @state is the state at the event and @event_ns when it happened; @q is a lookup key only and
 * is never dereferenced (the queue may be gone when the event is handled late).
 * Context: ANY (hard IRQ for hantro, a workqueue for its watchdog, process context for the
 * virtual drivers, an irq_work in hard IRQ with test_hardirq_signal); must not sleep.
 */
void vb2r_rs_buf_done(struct vb2_queue *q, struct vb2_buffer *vb, u32 index, u32 state,
		      u64 event_ns);
/*
 * vb2r_rs_vdev_removed() - implemented in Rust: @vdev is being unregistered (its driver is
 * unbinding, or the driver removes the node). Called from device_del() through the class
 * interface (vb2r_watch_class()), with the class's mutex held, before vb2 releases a
 * vdev->queue (vb2_video_unregister_device()). Context: process.
 */
void vb2r_rs_vdev_removed(struct video_device *vdev);

/* ---------------------------------------------------------------------------------------------
 * Module-wide registration.
 */

/*
 * vb2r_glue_init() - set up the test_hardirq_signal irq_works. Context: process (module init).
 */
void vb2r_glue_init(void);

/*
 * vb2r_probe_register() / vb2r_probe_unregister() - register the vb2_buf_done tracepoint probe
 * (while at least one node is attached), or unregister it and wait until no probe call is
 * running (tracepoint_synchronize_unregister()). The probe reads the buffer's index and state
 * and calls vb2r_rs_buf_done() in place; with the test_hardirq_signal parameter set it hands the
 * event to an irq_work (hard IRQ) instead (a test aid: none of the virtual drivers returns
 * buffers in hard IRQ as hantro does), or handles it in place when all of its 64 event slots are
 * busy. Context: process. Register returns 0 or a negative errno.
 */
int vb2r_probe_register(void);
void vb2r_probe_unregister(void);

/*
 * vb2r_watch_class() - make sure vb2r_rs_vdev_removed() is called when a V4L2 node (any device
 * of @vdev's class, the V4L2 core's video class) is unregistered: a class interface, registered
 * once. Must not be called with a lock that vb2r_rs_vdev_removed() takes.
 * Context: process. Returns 0 or a negative errno.
 */
int vb2r_watch_class(struct video_device *vdev);

/*
 * vb2r_glue_exit() - at module exit, after every node was detached: unregister the class
 * interface and the probe (if still registered), then wait until no task can still be inside,
 * or about to enter, a hook wrapper:
 *  1. an RCU-tasks grace period: a task that loaded one of our wrapper pointers from a table
 *     just before its entries were restored is now inside the wrapper (and counted) or gone;
 *  2. the in-flight counter of the wrappers reaches zero (a blocked DQBUF keeps this waiting
 *     until it returns; a line is logged every 5 s while it waits);
 *  3. a second RCU-tasks grace period: a wrapper that has decremented the counter has also run
 *     its last instructions (no voluntary sleep is possible in between).
 * Tables are never freed (see vb2r_hooks_remove()). Pending test_hardirq_signal irq_works are
 * waited for (irq_work_sync()).
 * Context: process (module exit).
 */
void vb2r_glue_exit(void);

/* ---------------------------------------------------------------------------------------------
 * Nodes: finding, pinning and hooking a video_device.
 */

/* What Rust needs to decide whether a node can be attached (vb2r_vdev_info()). */
struct vb2r_vdev_info {
	u32 vfl_type;     /* VFL_TYPE_* */
	u32 vfl_video;    /* VFL_TYPE_VIDEO */
	u32 device_caps;  /* V4L2_CAP_* */
	u32 has_qbuf;     /* the driver has vidioc_qbuf and vidioc_dqbuf */
	u32 uses_fh;      /* V4L2_FL_USES_V4L2_FH */
	u32 registered;   /* video_is_registered() */
};

/*
 * vb2r_vdev_get_from_fd() / vb2r_vdev_get_from_path() - the video_device behind a V4L2 fd or
 * a device node path, pinned: its driver module cannot be unloaded and the struct (with the
 * v4l2_device it holds a reference on) stays allocated until vb2r_vdev_put().
 * The path is checked to be a V4L2 character device (major 81) before it is opened, so that
 * naming another device never runs that device's open(). Whether the node can be attached is
 * Rust's decision (vb2r_vdev_info()).
 * Refuses with -EBADF (bad fd), -ENOENT (no such path), -ENOTTY (not a V4L2 node) or -ENODEV
 * (the driver is going away). On error returns NULL and sets *err.
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
 * vb2r_vdev_info() - the facts of @vdev that decide whether it can be attached.
 * vb2r_vdev_name() - the node name ("video3") into @buf (NUL-terminated, truncated to @len).
 * vb2r_vdev_driver() - the name of the driver bound to the node's parent device (what
 * VIDIOC_QUERYCAP reports for the drivers we know), or the owning module's name.
 * Context: any; @vdev pinned.
 */
void vb2r_vdev_info(struct video_device *vdev, struct vb2r_vdev_info *info);
void vb2r_vdev_name(struct video_device *vdev, char *buf, size_t len);
void vb2r_vdev_driver(struct video_device *vdev, char *buf, size_t len);

/*
 * vb2r_hooks_get() - the hook tables for @vdev: copies of its v4l2_file_operations and
 * v4l2_ioctl_ops in which release, unlocked_ioctl, reqbufs, remove_bufs, qbuf, dqbuf, expbuf,
 * streamon and streamoff (those the driver has) are replaced by wrappers that call vb2r_rs_pre/post() with
 * @rs_node around the original. Entries the driver leaves NULL stay NULL, so the node's
 * valid_ioctls (computed at registration) still match. The tables made earlier for @vdev are
 * reused when the driver's tables are still the same (their wrapper entries are written back
 * one by one with WRITE_ONCE(): a task may still hold a pointer to them, see
 * vb2r_hooks_remove()); otherwise new ones are made.
 * Context: process. Returns NULL on -ENOMEM.
 */
struct vb2r_hooks *vb2r_hooks_get(struct video_device *vdev, void *rs_node);

/*
 * vb2r_hooks_install() / vb2r_hooks_remove() - point @vdev at our tables, or back at the
 * driver's. The V4L2 core reads vdev->ioctl_ops once per ioctl, *before* it may sleep on the
 * serialization lock, and calls through the table it read afterwards. So remove also writes
 * the driver's original operation back into every wrapped entry of our tables (WRITE_ONCE()):
 * a task that read our table before the switch and wakes up after it calls the driver's
 * operation, not ours. Tables that were ever installed are never freed, not even at module
 * exit (kmemleak is told): such a task may read them at any later time. About 1.8 KiB per
 * attached node and module load.
 * Context: process; serialized by the caller.
 */
void vb2r_hooks_install(struct vb2r_hooks *h);
void vb2r_hooks_remove(struct vb2r_hooks *h);

/* ---------------------------------------------------------------------------------------------
 * Waiting for other devices' readers before a CAPTURE buffer goes back to the hardware.
 *
 * The readers' check runs in Rust's QBUF pre hook, under the V4L2 lock, where the buffer's
 * queue and dma-bufs are at hand; the wait must not hold that lock (vpu_mutex on hantro). So
 * the unlocked_ioctl file operation of an attached node is wrapped too: for VIDIOC_QBUF it
 * registers a struct vb2r_qbuf_wait for the calling task in the node's table (one of
 * VB2R_QBUF_SLOTS) and runs the driver's unlocked_ioctl. A pre hook that finds its task's
 * registration (vb2r_call.wait) and other devices' fences unsignaled on the buffer hands the
 * dma-bufs over in it (references), sets @retry and fails the QBUF before the original runs;
 * the wrapper, outside the lock again, calls vb2r_rs_qbuf_wait() and, if that returns 0, runs
 * the QBUF again from the start (the user's argument is read anew). A QBUF that finds no free
 * slot is not waited for (counted as busy): the table has room for more QBUFs in flight on one
 * node at once than a player makes.
 */
#define VB2R_QBUF_SLOTS 16
#define VB2R_WAIT_MAX 16

struct vb2r_qbuf_wait {
	u32 retry;                /* pre: wait for bufs[] and run the QBUF again */
	u32 nbufs;                /* entries in bufs[] */
	u32 index;                /* the buffer (for the log line) */
	u32 pad;
	struct dma_buf *bufs[VB2R_WAIT_MAX]; /* one reference each, from pre to the wait */
	u64 waited_ns;            /* waited so far by this QBUF (the bound covers the retries) */
};

/*
 * Waits for other devices' fences on @w->bufs[] (bounded: what is left of the bound after
 * @w->waited_ns) and puts the references; clears @w->nbufs. 0: run the QBUF again; else the
 * errno the QBUF fails with (-ERESTARTSYS, -ETIMEDOUT).
 * Context: process, no lock held, in the ioctl that registered @w.
 */
int vb2r_rs_qbuf_wait(void *rs_node, struct vb2r_qbuf_wait *w);

/*
 * Whether a QBUF on this node needs the readers' check at all (false in mode off, or once the
 * node is detached): asked first, so that such a QBUF registers nothing.
 * Context: any.
 */
bool vb2r_rs_qbuf_checks(void *rs_node);

/*
 * vb2r_param_wait_readers() - the wait_readers parameter (0644); and its bound in ms.
 * Context: any.
 */
bool vb2r_param_wait_readers(void);
u32 vb2r_param_wait_readers_timeout_ms(void);

/*
 * vb2r_dmabuf_wait_others() - wait, interruptibly and at most @timeout_ms, for every unsignaled
 * fence on @dmabuf's resv, of any usage, that is not one of ours. Returns 0 (none left),
 * -ERESTARTSYS (a signal) or -ETIMEDOUT, and the time waited in *waited_ns.
 * vb2r_dmabuf_others_busy() - whether such a fence is unsignaled now (lock-free).
 * Context: process (wait; may sleep, allocates a fence array); any (busy).
 */
int vb2r_dmabuf_wait_others(struct dma_buf *dmabuf, u32 timeout_ms, u64 *waited_ns);
bool vb2r_dmabuf_others_busy(struct dma_buf *dmabuf);

/* ---------------------------------------------------------------------------------------------
 * Watchdog, explicit sync.
 */

/*
 * vb2r_param_fence_timeout_ms() - the fence_timeout_ms parameter (0644: may change at run time).
 * Context: any.
 */
u32 vb2r_param_fence_timeout_ms(void);

/*
 * vb2r_watchdog_start() / vb2r_watchdog_stop() - run vb2r_rs_watchdog() every 100 ms from the
 * system workqueue while started (started with the first attached node); stop waits for a
 * running pass. Context: process; stop may not be called from the watchdog itself.
 * vb2r_rs_watchdog() - implemented in Rust: one pass over the pending fences. Context: process
 * (a workqueue).
 */
void vb2r_watchdog_start(void);
void vb2r_watchdog_stop(void);
void vb2r_rs_watchdog(void);

/*
 * vb2r_fd_queue() - the vb2 queue of buffer type @type that a call on the V4L2 fd @fd would
 * address (vb2r_file_queue()), as a lookup key only: it is not pinned and must not be
 * dereferenced. NULL with *err set: -EBADF, -ENOTTY (not a V4L2 node), -EINVAL (no such queue).
 * Context: process.
 */
struct vb2_queue *vb2r_fd_queue(int fd, u32 type, int *err);

/*
 * vb2r_sync_file_fd() - a new O_CLOEXEC fd of a sync_file holding @fence, or the signaled stub
 * fence when @fence is NULL; a negative errno on failure. Context: process.
 */
int vb2r_sync_file_fd(struct dma_fence *fence);

/* ---------------------------------------------------------------------------------------------
 * Queues and buffers.
 */

/*
 * vb2r_file_queue() - the vb2 queue a call on @file with buffer type @type addresses, as the V4L2
 * helpers find it: the m2m context's queue of that direction when @file has one (@m2m set to 1),
 * else the node's vdev->queue when its type is @type (@m2m 0), else NULL.
 * vb2r_file_release_queue() - the CAPTURE queue that closing @file may release: its m2m context's
 * CAPTURE queue, or the node's vdev->queue if that is a capture queue; NULL otherwise.
 * Context: process, in a call on @file.
 */
struct vb2_queue *vb2r_file_queue(struct file *file, u32 type, u32 *m2m);
struct vb2_queue *vb2r_file_release_queue(struct file *file, u32 *m2m);

/*
 * vb2r_queue_owner() - whether the owner of @q is @file (1), nobody (0), or another file (2):
 * vb2_queue_is_busy() is "2". Meaningful for a vdev->queue; an m2m context's queues belong to
 * the file of the context.
 * vb2r_queue_type() - q->type.
 * vb2r_queue_max_buffers() - q->max_num_buffers: the bound on buffer indices.
 * Context: process, with the queue's lock held (an ioctl of the queue).
 */
u32 vb2r_queue_owner(struct vb2_queue *q, struct file *file);
u32 vb2r_queue_type(struct vb2_queue *q);
u32 vb2r_queue_max_buffers(struct vb2_queue *q);

/* Buffer states (enum vb2_buffer_state, mapped one to one), VB2R_BUF_NONE when there is none. */
enum vb2r_buf_state {
	VB2R_BUF_DEQUEUED = 0,
	VB2R_BUF_IN_REQUEST = 1,
	VB2R_BUF_PREPARING = 2,
	VB2R_BUF_QUEUED = 3,
	VB2R_BUF_ACTIVE = 4,
	VB2R_BUF_DONE = 5,
	VB2R_BUF_ERROR = 6,
	VB2R_BUF_NONE = 7,
};

/*
 * vb2r_vb_state() - @vb's current state. Context: any; @vb alive (the buf_done probe).
 * vb2r_buffer_state() - the state of buffer @index of @q, VB2R_BUF_NONE if there is none.
 * vb2r_buffer_planes() - the number of planes of buffer @index of @q, or 0 if there is none.
 * Context: process, with the queue's lock held; or, for vb2r_buffer_state(), with no call that
 * can allocate or free buffers running on the queue (vb2r_rs_vdev_removed()).
 */
u32 vb2r_vb_state(struct vb2_buffer *vb);
u32 vb2r_buffer_state(struct vb2_queue *q, u32 index);
/*
 * vb2r_buffer_state_memory() - vb2r_buffer_state() and, in *@memory, q->memory (VB2_MEMORY_*
 * equals V4L2_MEMORY_*; 0 when no buffers are allocated): one call for a QBUF's checks.
 */
u32 vb2r_buffer_state_memory(struct vb2_queue *q, u32 index, u32 *memory);
u32 vb2r_buffer_planes(struct vb2_queue *q, u32 index);

/*
 * vb2r_buffer_imported_dmabuf() - for a V4L2_MEMORY_DMABUF queue, the dma-buf attached to
 * @plane of buffer @index, with a reference taken; NULL if there is none.
 * Context: process, with the queue's lock held.
 */
struct dma_buf *vb2r_buffer_imported_dmabuf(struct vb2_queue *q, u32 index, u32 plane);

/* ---------------------------------------------------------------------------------------------
 * Mode strict: what the jobs of an m2m context will be, from its ready queues.
 */

/* Most buffers a snapshot lists per side; more are left out (n* says how many there were). */
#define VB2R_SNAP_MAX 32

/* One buffer of a snapshot, in queue order. */
struct vb2r_snap_buf {
	u32 index;
	u32 hold;        /* OUTPUT: V4L2_BUF_FLAG_M2M_HOLD_CAPTURE_BUF; CAPTURE: is_held */
	u32 ts_valid;    /* CAPTURE: a timestamp was copied from an OUTPUT buffer */
	u32 pad;
	u64 ts;          /* vb2 timestamp (ns) */
};

/*
 * The job-relevant state of an m2m context: its ready queues (the buffers the driver holds and
 * will pair into jobs, running job first), whether each side streams, whether the context
 * runs jobs without capture streaming, and the buffers vb2 still holds for a side that does not
 * stream yet (they go to the driver at STREAMON).
 */
struct vb2r_m2m_snap {
	u32 out_streaming;
	u32 cap_streaming;   /* start_streaming() called on the CAPTURE queue */
	u32 ignore_cap_streaming;
	u32 nsrc;
	u32 ndst;
	u32 nsrc_vb2;        /* OUTPUT buffers vb2 holds (QUEUED, not in the driver yet) */
	u32 ndst_vb2;
	u32 pad;
	struct vb2r_snap_buf src[VB2R_SNAP_MAX];
	struct vb2r_snap_buf dst[VB2R_SNAP_MAX];
	struct vb2r_snap_buf src_vb2[VB2R_SNAP_MAX];
	struct vb2r_snap_buf dst_vb2[VB2R_SNAP_MAX];
};

/*
 * vb2r_m2m_snapshot() - fill @s for the m2m context whose CAPTURE queue is @cap_q; the lists of
 * buffers vb2 holds (src_vb2, dst_vb2) only when @vb2_held (a STREAMON needs them), else their
 * counts are 0.
 * @cap_q must be the CAPTURE queue of an m2m context (vb2r_file_queue() said m2m).
 * Context: process, in a call on the context's file, its queue lock held (the ready queues are
 * read under their spinlocks).
 */
void vb2r_m2m_snapshot(struct vb2_queue *cap_q, struct vb2r_m2m_snap *s, bool vb2_held);
/*
 * vb2r_m2m_src_ready() - how many OUTPUT buffers the m2m context whose CAPTURE queue is @cap_q
 * has in its ready queue (v4l2_m2m_num_src_bufs_ready()). As vb2r_m2m_snapshot().
 */
u32 vb2r_m2m_src_ready(struct vb2_queue *cap_q);

/*
 * vb2r_m2m_out_queue() - the OUTPUT queue of the m2m context whose CAPTURE queue is @cap_q.
 * Context: any; the context alive.
 */
struct vb2_queue *vb2r_m2m_out_queue(struct vb2_queue *cap_q);

/*
 * vb2r_queue_streaming() - start_streaming() was called on @q.
 * vb2r_queue_vb2_queued() - the buffers of @q that vb2 holds in its queued list and has not
 * given to the driver (state QUEUED), in order, at most @max; returns how many there are.
 * Context: process, the queue's lock held.
 */
u32 vb2r_queue_streaming(struct vb2_queue *q);
u32 vb2r_queue_vb2_queued(struct vb2_queue *q, struct vb2r_snap_buf *out, u32 max);

/*
 * vb2r_vb_output_info() - for an OUTPUT buffer (the buf_done probe): its hold flag and timestamp.
 * Context: any; @vb alive.
 */
void vb2r_vb_output_info(struct vb2_buffer *vb, u32 *hold, u64 *ts);

/*
 * Media requests (stateless decoders): the media device's req_queue is wrapped like the ioctl
 * ops. vb2r_rs_req_queue() is called with the OUTPUT buffers of the request about to be queued
 * (at most VB2R_SNAP_MAX), before the original req_queue, which cannot fail and may run the job
 * at once (visl), with mdev->req_queue_mutex held. Context: process.
 */
struct vb2r_req_buf {
	struct vb2_queue *q;
	u32 index;
	u32 hold;
	u64 ts;
};
int vb2r_rs_req_queue(void *rs_node, const struct vb2r_req_buf *bufs, u32 n);
/*
 * (vb2r_rs_req_queue() runs with the OUTPUT queue's lock held, as a QBUF does; m2m stateless
 * drivers share it with the CAPTURE queue (hantro: vpu_mutex; visl: the context's vb_mutex).
 * It returns 1 when it published a fence. The original req_queue is not run as a signalling
 * section: it takes the queue lock again, which REQBUFS holds across GFP_KERNEL allocations
 * (docs/design.md). A request whose OUTPUT queue has no lock is not looked at.)
 */

/*
 * vb2r_mdev_hooks_install() - wrap req_queue of the media device of @vdev's v4l2_device (if it
 * has one with a req_queue), with @rs_node for vb2r_rs_req_queue(). The table copy is never
 * freed and restored entry by entry, like the ioctl tables (vb2r_hooks_remove()).
 * vb2r_mdev_hooks_remove() - point the media device back at its own ops.
 * Returns 1 if wrapped, 0 if the node has no request queue op, -ENOMEM.
 * Context: process; serialized by the caller.
 */
int vb2r_mdev_hooks_install(struct video_device *vdev, void *rs_node);
void vb2r_mdev_hooks_remove(struct video_device *vdev);

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
/* vb2r_dmabuf_ref() - another reference on @dmabuf; returns it. Context: any. */
struct dma_buf *vb2r_dmabuf_ref(struct dma_buf *dmabuf);

/*
 * vb2r_fence_context() - a new fence context (dma_fence_context_alloc(1)).
 * Context: any.
 */
u64 vb2r_fence_context(void);

/*
 * vb2r_fence_pins_module() - whether each of our fences holds a module reference until it is
 * freed (kernels before 7.2): then no fence may be made ahead of its use, or an unused one
 * would keep the module from unloading. Context: any.
 */
bool vb2r_fence_pins_module(void);

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
 * vb2r_fence_publish() - add @fence with DMA_RESV_USAGE_WRITE to the reservation objects of
 * the @n distinct dma-bufs in @bufs, all or none: every resv is locked under one ww_acquire_ctx
 * (interruptible; -EDEADLK backs off and retries), a slot is reserved on every one, and only then
 * is the fence added to each (a fence of the same context already there is replaced, as
 * dma_resv_add_fence() does), so nothing can fail or allocate once the fence is visible.
 * Context: process, may sleep on the resv locks; the caller may hold the V4L2 queue lock (vb2
 * itself takes resv locks under it when it maps imported buffers). Returns 0, -ENOMEM, -EINTR
 * or -ERESTARTSYS (a signal while waiting for a lock), -EINVAL (more than 32 dma-bufs, or the
 * same one twice).
 */
int vb2r_fence_publish(struct dma_buf *const *bufs, u32 n, struct dma_fence *fence);

/*
 * vb2r_dmabuf_only_ours() - whether the reference we hold is the only one left on @dmabuf:
 * the client closed its fd and nothing else (an mmap, an importer) keeps the buffer, so nobody
 * can see a fence on it any more. Context: any.
 */
bool vb2r_dmabuf_only_ours(struct dma_buf *dmabuf);

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
 * vb2r_sleep_ms() - msleep(@ms). Context: process.
 */
u64 vb2r_ktime_ns(void);
void vb2r_sleep_ms(u32 ms);

/*
 * vb2r_param_test_kill_delay_ms() - the test_kill_delay_ms test aid (0644), capped at 5000.
 * Context: any.
 */
u32 vb2r_param_test_kill_delay_ms(void);

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
 * vb2r_spin_trylock_irqsave() - spin_trylock_irqsave(@lock): true with the lock held and the saved
 * interrupt state in *@flags (for vb2r_spin_unlock_irqrestore()), false with neither. Used by the
 * Backend's try_lock, which 7.0-7.2's `kernel::sync::lock::Backend` requires (6.12's does not).
 */
bool vb2r_spin_trylock_irqsave(spinlock_t *lock, unsigned long *flags);

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
