// SPDX-License-Identifier: GPL-2.0
/*
 * vb2_resv C glue. The contracts are in glue.h; this file holds no policy, only access to C
 * structures, macros and registration interfaces that Rust-for-Linux does not cover.
 */
#include <linux/delay.h>
#include <linux/device.h>
#include <linux/dma-buf.h>
#include <linux/dma-fence.h>
#include <linux/dma-resv.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/irq_work.h>
#include <linux/kmemleak.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/namei.h>
#include <linux/rculist.h>
#include <linux/slab.h>
#include <linux/version.h>
#include <linux/videodev2.h>
#include <media/v4l2-dev.h>
#include <media/v4l2-fh.h>
#include <media/v4l2-ioctl.h>
#include <media/v4l2-mem2mem.h>
#include <media/videobuf2-core.h>
#include <trace/events/vb2.h>

#include "glue.h"

MODULE_VERSION(VB2R_VERSION);
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 13, 0)
MODULE_IMPORT_NS("DMA_BUF");
#else
MODULE_IMPORT_NS(DMA_BUF);
#endif

/*
 * A fence outlives the module that issued it: a dma-buf's resv keeps it as long as the buffer
 * lives. It is independent of us only if (a) the core detaches its ops when it signals
 * (dma_fence_signal_timestamp_locked() clears fence->ops when there is no .release and no .wait)
 * and (b) its spinlock is the fence's inline lock (a lock of ours would carry a lockdep class whose
 * key and name live in our module). Both came in 7.1 (541c8f2468b9 "dma-buf: detach fence ops on
 * signal v3" and 1f32f310a13c "dma-buf: inline spinlock for fence protection v5", drm-misc-next
 * after 7.0-rc1), but 7.1's dma_fence tracepoints (signaled, wait_end, destroy) still read
 * fence->ops of a detached fence: a NULL dereference with those events enabled, fixed by
 * e94b9f01543c "dma-fence: Fix potential tracepoint null pointer dereferences" in 7.2. So a fence
 * of ours is independent from 7.2 on (checked in Debian's 7.2.12 and 7.3.4); 6.12 has neither
 * (6.12.117: dma_fence_init() BUG()s on a NULL lock and fence->ops is never cleared), and 7.0
 * and 7.1 take the old path too (docs/design.md, "7.0, 7.1 and 7.2"). On old kernels every fence
 * holds a reference on this module from its creation to its release (.release below, which also
 * keeps 7.1 from detaching its ops): rmmod answers -EBUSY while any of our fences exists instead
 * of leaving fences that point into freed module memory, and works again once the last one is
 * gone.
 */
#define VB2R_FENCE_INDEPENDENT (LINUX_VERSION_CODE >= KERNEL_VERSION(7, 2, 0))

const char *vb2r_version(void)
{
	return VB2R_VERSION;
}

static char mode[16] = "queue";
module_param_string(mode, mode, sizeof(mode), 0444);
MODULE_PARM_DESC(mode, "what to fence: queue (default: a WRITE fence from QBUF until the driver returns the buffer), dqbuf (a signaled fence at DQBUF), off");

static char attach[256];
module_param_string(attach, attach, sizeof(attach), 0444);
MODULE_PARM_DESC(attach, "comma-separated V4L2 video nodes (/dev/videoN) or driver names (e.g. visl) to attach to at load");

const char *vb2r_param_mode(void)
{
	return mode;
}

const char *vb2r_param_attach(void)
{
	return attach;
}

/* ---------------------------------------------------------------------------------------------
 * Hook tables.
 */

struct vb2r_hooks {
	struct list_head list;			/* in vb2r_hooks_list until vb2r_glue_exit() */
	struct video_device *vdev;
	void *rs_node;
	const struct v4l2_file_operations *orig_fops;
	const struct v4l2_ioctl_ops *orig_ops;
	struct v4l2_file_operations fops;	/* our copies, what vdev points at when installed */
	struct v4l2_ioctl_ops ops;
};

/* Every table made; readers (the wrappers) walk it under RCU, writers hold the mutex. */
static LIST_HEAD(vb2r_hooks_list);
static DEFINE_MUTEX(vb2r_hooks_mutex);
/* Wrappers running now: vb2r_glue_exit() waits for zero. */
static atomic_t vb2r_inflight = ATOMIC_INIT(0);
static DECLARE_WAIT_QUEUE_HEAD(vb2r_inflight_wq);

/*
 * The tables of the node @file belongs to. Only our tables point at the wrappers, and the list
 * keeps every table until vb2r_glue_exit() has waited for every wrapper, so the search cannot
 * fail.
 */
static struct vb2r_hooks *vb2r_enter(struct file *file)
{
	struct video_device *vdev = video_devdata(file);
	struct vb2r_hooks *h, *found = NULL;

	atomic_inc(&vb2r_inflight);
	rcu_read_lock();
	list_for_each_entry_rcu(h, &vb2r_hooks_list, list) {
		if (h->vdev == vdev) {
			found = h;
			break;
		}
	}
	rcu_read_unlock();
	return found;
}

static void vb2r_exit_call(void)
{
	if (atomic_dec_and_test(&vb2r_inflight))
		wake_up_all(&vb2r_inflight_wq);
}

static void vb2r_call_init(struct vb2r_call *c, enum vb2r_op op, struct file *file, u32 type)
{
	memset(c, 0, sizeof(*c));
	c->op = op;
	c->file = file;
	c->type = type;
	c->fd = -1;
}

/*
 * The wrappers. Each one: find our tables, let Rust act before the original (it may refuse),
 * run the original (inside a fence signalling section when Rust published a fence it is on the
 * signalling path of), let Rust act on the result. A wrapper that finds no table (impossible,
 * see vb2r_enter()) fails the call rather than guessing an operation to run.
 */
#define VB2R_WRAP(name, member, argtype, fill)					\
static int vb2r_w_##name(struct file *file, void *priv, argtype arg)		\
{										\
	struct vb2r_hooks *h = vb2r_enter(file);				\
	struct vb2r_call c;							\
	bool ran = false;							\
	int ret;								\
										\
	if (WARN_ON_ONCE(!h)) {							\
		vb2r_exit_call();						\
		return -ENODEV;							\
	}									\
	fill;									\
	ret = vb2r_rs_pre(h->rs_node, &c);					\
	if (!ret) {								\
		bool cookie = c.signalling ? dma_fence_begin_signalling() : false; \
										\
		ret = h->orig_ops->member(file, priv, arg);			\
		if (c.signalling)						\
			dma_fence_end_signalling(cookie);			\
		ran = true;							\
		vb2r_fill_after_##name(&c, arg);				\
	}									\
	vb2r_rs_post(h->rs_node, &c, ran, ret);					\
	vb2r_exit_call();							\
	return ret;								\
}

static void vb2r_fill_buffer(struct vb2r_call *c, const struct v4l2_buffer *b)
{
	u32 p;

	c->index = b->index;
	c->memory = b->memory;
	c->flags = b->flags;
	if (b->memory != V4L2_MEMORY_DMABUF)
		return;
	if (V4L2_TYPE_IS_MULTIPLANAR(b->type)) {
		/* video_usercopy() has copied the planes array into the kernel. */
		c->nplanes = min_t(u32, b->length, VB2R_MAX_PLANES);
		for (p = 0; p < c->nplanes; p++)
			c->fds[p] = b->m.planes[p].m.fd;
	} else {
		c->nplanes = 1;
		c->fds[0] = b->m.fd;
	}
}

static inline void vb2r_fill_after_reqbufs(struct vb2r_call *c, struct v4l2_requestbuffers *rb)
{
}

static inline void vb2r_fill_after_remove_bufs(struct vb2r_call *c, struct v4l2_remove_buffers *rb)
{
}

static inline void vb2r_fill_after_qbuf(struct vb2r_call *c, struct v4l2_buffer *b)
{
}

static inline void vb2r_fill_after_dqbuf(struct vb2r_call *c, struct v4l2_buffer *b)
{
	c->index = b->index;
	c->flags = b->flags;
}

static inline void vb2r_fill_after_expbuf(struct vb2r_call *c, struct v4l2_exportbuffer *eb)
{
	c->fd = eb->fd;
}

static inline void vb2r_fill_after_streamon(struct vb2r_call *c, enum v4l2_buf_type t)
{
}

static inline void vb2r_fill_after_streamoff(struct vb2r_call *c, enum v4l2_buf_type t)
{
}

VB2R_WRAP(reqbufs, vidioc_reqbufs, struct v4l2_requestbuffers *,
	  (vb2r_call_init(&c, VB2R_OP_REQBUFS, file, arg->type),
	   c.count = arg->count, c.memory = arg->memory))
VB2R_WRAP(remove_bufs, vidioc_remove_bufs, struct v4l2_remove_buffers *,
	  (vb2r_call_init(&c, VB2R_OP_REMOVE_BUFS, file, arg->type),
	   c.index = arg->index, c.count = arg->count))
VB2R_WRAP(qbuf, vidioc_qbuf, struct v4l2_buffer *,
	  (vb2r_call_init(&c, VB2R_OP_QBUF, file, arg->type), vb2r_fill_buffer(&c, arg)))
VB2R_WRAP(dqbuf, vidioc_dqbuf, struct v4l2_buffer *,
	  (vb2r_call_init(&c, VB2R_OP_DQBUF, file, arg->type), c.memory = arg->memory))
VB2R_WRAP(expbuf, vidioc_expbuf, struct v4l2_exportbuffer *,
	  (vb2r_call_init(&c, VB2R_OP_EXPBUF, file, arg->type),
	   c.index = arg->index, c.plane = arg->plane))
VB2R_WRAP(streamon, vidioc_streamon, enum v4l2_buf_type,
	  vb2r_call_init(&c, VB2R_OP_STREAMON, file, arg))
VB2R_WRAP(streamoff, vidioc_streamoff, enum v4l2_buf_type,
	  vb2r_call_init(&c, VB2R_OP_STREAMOFF, file, arg))

static int vb2r_w_release(struct file *file)
{
	struct vb2r_hooks *h = vb2r_enter(file);
	struct vb2r_call c;
	int ret;

	if (WARN_ON_ONCE(!h)) {
		vb2r_exit_call();
		return 0;
	}
	vb2r_call_init(&c, VB2R_OP_RELEASE, file, 0);
	/* A release cannot be refused: Rust's pre only prepares the queue for what follows. */
	(void)vb2r_rs_pre(h->rs_node, &c);
	ret = h->orig_fops->release ? h->orig_fops->release(file) : 0;
	vb2r_rs_post(h->rs_node, &c, true, ret);
	vb2r_exit_call();
	return ret;
}

/* Writes our wrappers into the entries of @h's tables that the driver has (WRITE_ONCE each). */
static void vb2r_hooks_arm(struct vb2r_hooks *h)
{
#define VB2R_HOOK(member, name) do {					\
		if (h->orig_ops->member)				\
			WRITE_ONCE(h->ops.member, vb2r_w_##name);	\
	} while (0)
	VB2R_HOOK(vidioc_reqbufs, reqbufs);
	VB2R_HOOK(vidioc_remove_bufs, remove_bufs);
	VB2R_HOOK(vidioc_qbuf, qbuf);
	VB2R_HOOK(vidioc_dqbuf, dqbuf);
	VB2R_HOOK(vidioc_expbuf, expbuf);
	VB2R_HOOK(vidioc_streamon, streamon);
	VB2R_HOOK(vidioc_streamoff, streamoff);
#undef VB2R_HOOK
	if (h->orig_fops->release)
		WRITE_ONCE(h->fops.release, vb2r_w_release);
}

/* Writes the driver's own operations back into the wrapped entries (WRITE_ONCE each). */
static void vb2r_hooks_disarm(struct vb2r_hooks *h)
{
#define VB2R_UNHOOK(member) WRITE_ONCE(h->ops.member, h->orig_ops->member)
	VB2R_UNHOOK(vidioc_reqbufs);
	VB2R_UNHOOK(vidioc_remove_bufs);
	VB2R_UNHOOK(vidioc_qbuf);
	VB2R_UNHOOK(vidioc_dqbuf);
	VB2R_UNHOOK(vidioc_expbuf);
	VB2R_UNHOOK(vidioc_streamon);
	VB2R_UNHOOK(vidioc_streamoff);
#undef VB2R_UNHOOK
	WRITE_ONCE(h->fops.release, h->orig_fops->release);
}

struct vb2r_hooks *vb2r_hooks_get(struct video_device *vdev, void *rs_node)
{
	struct vb2r_hooks *h;

	mutex_lock(&vb2r_hooks_mutex);
	list_for_each_entry(h, &vb2r_hooks_list, list) {
		/* Reused only for the same driver tables; a table is never rewritten wholesale. */
		if (h->vdev == vdev && h->orig_ops == vdev->ioctl_ops &&
		    h->orig_fops == vdev->fops)
			goto arm;
	}
	h = kzalloc(sizeof(*h), GFP_KERNEL);
	if (!h) {
		mutex_unlock(&vb2r_hooks_mutex);
		return NULL;
	}
	h->vdev = vdev;
	h->orig_fops = vdev->fops;
	h->orig_ops = vdev->ioctl_ops;
	/* Nothing can read a new table yet: plain copies. */
	h->fops = *vdev->fops;
	h->ops = *vdev->ioctl_ops;
	/* Newest first, so that a newer table for the same vdev is found before an older one. */
	list_add_rcu(&h->list, &vb2r_hooks_list);
arm:
	WRITE_ONCE(h->rs_node, rs_node);
	vb2r_hooks_arm(h);
	mutex_unlock(&vb2r_hooks_mutex);
	return h;
}

void vb2r_hooks_install(struct vb2r_hooks *h)
{
	/* Publish the fully written tables before the pointers that lead to them. */
	smp_wmb();
	WRITE_ONCE(h->vdev->ioctl_ops, &h->ops);
	WRITE_ONCE(h->vdev->fops, &h->fops);
}

void vb2r_hooks_remove(struct vb2r_hooks *h)
{
	WRITE_ONCE(h->vdev->fops, h->orig_fops);
	WRITE_ONCE(h->vdev->ioctl_ops, h->orig_ops);
	/* A task that read our table pointer before the switch now finds the driver's entries. */
	mutex_lock(&vb2r_hooks_mutex);
	vb2r_hooks_disarm(h);
	mutex_unlock(&vb2r_hooks_mutex);
}

/* ---------------------------------------------------------------------------------------------
 * Nodes.
 */

static bool vb2r_is_video_chrdev(struct inode *inode)
{
	return S_ISCHR(inode->i_mode) && imajor(inode) == VIDEO_MAJOR;
}

/* Pins the node of @file; on failure returns NULL with *err set. */
static struct video_device *vb2r_vdev_get(struct file *file, int *err)
{
	struct video_device *vdev;

	if (!vb2r_is_video_chrdev(file_inode(file))) {
		*err = -ENOTTY;
		return NULL;
	}
	vdev = video_devdata(file);
	if (!vdev->fops || !video_is_registered(vdev) || !try_module_get(vdev->fops->owner)) {
		*err = -ENODEV;
		return NULL;
	}
	get_device(&vdev->dev);
	return vdev;
}

struct video_device *vb2r_vdev_get_from_fd(int fd, int *err)
{
	struct video_device *vdev;
	struct fd f = fdget(fd);

	if (!fd_file(f)) {
		*err = -EBADF;
		return NULL;
	}
	vdev = vb2r_vdev_get(fd_file(f), err);
	fdput(f);
	return vdev;
}

struct video_device *vb2r_vdev_get_from_path(const char *path, int *err)
{
	struct video_device *vdev;
	struct path p;
	struct file *file;
	bool video;

	*err = kern_path(path, LOOKUP_FOLLOW, &p);
	if (*err)
		return NULL;
	video = vb2r_is_video_chrdev(d_inode(p.dentry));
	path_put(&p);
	if (!video) {
		*err = -ENOTTY;
		return NULL;
	}
	file = filp_open(path, O_RDWR | O_NONBLOCK, 0);
	if (IS_ERR(file)) {
		*err = PTR_ERR(file);
		return NULL;
	}
	vdev = vb2r_vdev_get(file, err);
	filp_close(file, NULL);
	return vdev;
}

void vb2r_vdev_put(struct video_device *vdev)
{
	struct module *owner = vdev->fops == NULL ? NULL : vdev->fops->owner;
	struct vb2r_hooks *h;

	/* While hooked, vdev->fops is our copy; its owner field is the driver's. */
	mutex_lock(&vb2r_hooks_mutex);
	list_for_each_entry(h, &vb2r_hooks_list, list)
		if (h->vdev == vdev && h->orig_fops)
			owner = h->orig_fops->owner;
	mutex_unlock(&vb2r_hooks_mutex);
	put_device(&vdev->dev);
	module_put(owner);
}

void vb2r_vdev_info(struct video_device *vdev, struct vb2r_vdev_info *info)
{
	const struct v4l2_ioctl_ops *ops = vdev->ioctl_ops;

	info->vfl_type = vdev->vfl_type;
	info->vfl_video = VFL_TYPE_VIDEO;
	info->device_caps = vdev->device_caps;
	info->has_qbuf = ops && ops->vidioc_qbuf && ops->vidioc_dqbuf;
	info->uses_fh = test_bit(V4L2_FL_USES_V4L2_FH, &vdev->flags);
	info->registered = video_is_registered(vdev);
}

void vb2r_vdev_name(struct video_device *vdev, char *buf, size_t len)
{
	strscpy(buf, video_device_node_name(vdev), len);
}

void vb2r_vdev_driver(struct video_device *vdev, char *buf, size_t len)
{
	struct device *parent = vdev->dev.parent;

	if (parent && parent->driver && parent->driver->name)
		strscpy(buf, parent->driver->name, len);
	else if (vdev->fops && vdev->fops->owner)
		strscpy(buf, module_name(vdev->fops->owner), len);
	else
		strscpy(buf, "", len);
}

/* Unregistration of any node of the video class (class_interface.remove_dev). */
static void vb2r_class_remove_dev(struct device *dev)
{
	vb2r_rs_vdev_removed(container_of(dev, struct video_device, dev));
}

static struct class_interface vb2r_class_intf = {
	.remove_dev = vb2r_class_remove_dev,
};
static DEFINE_MUTEX(vb2r_class_mutex);
static bool vb2r_class_registered;

int vb2r_watch_class(struct video_device *vdev)
{
	int ret = 0;

	mutex_lock(&vb2r_class_mutex);
	if (!vb2r_class_registered) {
		vb2r_class_intf.class = vdev->dev.class;
		ret = class_interface_register(&vb2r_class_intf);
		vb2r_class_registered = !ret;
	}
	mutex_unlock(&vb2r_class_mutex);
	return ret;
}

/* ---------------------------------------------------------------------------------------------
 * Queues and buffers.
 */

static struct v4l2_fh *vb2r_file_fh(struct file *file)
{
	struct video_device *vdev = video_devdata(file);

	return test_bit(V4L2_FL_USES_V4L2_FH, &vdev->flags) ? file->private_data : NULL;
}

struct vb2_queue *vb2r_file_queue(struct file *file, u32 type, u32 *m2m)
{
	struct video_device *vdev = video_devdata(file);
	struct v4l2_fh *fh = vb2r_file_fh(file);

	/* The static inline accessors: no symbol dependency on v4l2-mem2mem.ko. */
	if (fh && fh->m2m_ctx) {
		*m2m = 1;
		return V4L2_TYPE_IS_OUTPUT(type) ? v4l2_m2m_get_src_vq(fh->m2m_ctx) :
						   v4l2_m2m_get_dst_vq(fh->m2m_ctx);
	}
	*m2m = 0;
	if (vdev->queue && vdev->queue->type == type)
		return vdev->queue;
	return NULL;
}

struct vb2_queue *vb2r_file_release_queue(struct file *file, u32 *m2m)
{
	struct video_device *vdev = video_devdata(file);
	struct v4l2_fh *fh = vb2r_file_fh(file);

	if (fh && fh->m2m_ctx) {
		*m2m = 1;
		return v4l2_m2m_get_dst_vq(fh->m2m_ctx);
	}
	*m2m = 0;
	if (vdev->queue && V4L2_TYPE_IS_CAPTURE(vdev->queue->type))
		return vdev->queue;
	return NULL;
}

u32 vb2r_queue_owner(struct vb2_queue *q, struct file *file)
{
	if (!q->owner)
		return 0;
	return q->owner == file->private_data ? 1 : 2;
}

u32 vb2r_queue_type(struct vb2_queue *q)
{
	return q->type;
}

u32 vb2r_queue_memory(struct vb2_queue *q)
{
	return q->memory;
}

u32 vb2r_queue_max_buffers(struct vb2_queue *q)
{
	return q->max_num_buffers;
}

u32 vb2r_vb_state(struct vb2_buffer *vb)
{
	switch (READ_ONCE(vb->state)) {
	case VB2_BUF_STATE_DEQUEUED:
		return VB2R_BUF_DEQUEUED;
	case VB2_BUF_STATE_IN_REQUEST:
		return VB2R_BUF_IN_REQUEST;
	case VB2_BUF_STATE_PREPARING:
		return VB2R_BUF_PREPARING;
	case VB2_BUF_STATE_QUEUED:
		return VB2R_BUF_QUEUED;
	case VB2_BUF_STATE_ACTIVE:
		return VB2R_BUF_ACTIVE;
	case VB2_BUF_STATE_DONE:
		return VB2R_BUF_DONE;
	case VB2_BUF_STATE_ERROR:
		return VB2R_BUF_ERROR;
	}
	return VB2R_BUF_NONE;
}

u32 vb2r_buffer_state(struct vb2_queue *q, u32 index)
{
	struct vb2_buffer *vb = index < q->max_num_buffers ? vb2_get_buffer(q, index) : NULL;

	return vb ? vb2r_vb_state(vb) : VB2R_BUF_NONE;
}

u32 vb2r_buffer_planes(struct vb2_queue *q, u32 index)
{
	struct vb2_buffer *vb = index < q->max_num_buffers ? vb2_get_buffer(q, index) : NULL;

	return vb ? vb->num_planes : 0;
}

struct dma_buf *vb2r_buffer_imported_dmabuf(struct vb2_queue *q, u32 index, u32 plane)
{
	struct vb2_buffer *vb = index < q->max_num_buffers ? vb2_get_buffer(q, index) : NULL;
	struct dma_buf *dbuf;

	if (!vb || q->memory != VB2_MEMORY_DMABUF || plane >= vb->num_planes)
		return NULL;
	dbuf = vb->planes[plane].dbuf;
	if (dbuf)
		get_dma_buf(dbuf);
	return dbuf;
}

/* ---------------------------------------------------------------------------------------------
 * dma-buf, dma_resv, dma_fence.
 */

struct dma_buf *vb2r_dmabuf_get(int fd)
{
	struct dma_buf *dmabuf = dma_buf_get(fd);

	return IS_ERR(dmabuf) ? NULL : dmabuf;
}

struct dma_buf *vb2r_dmabuf_get_export(int fd, struct vb2_queue *q, u32 index, u32 plane)
{
	struct vb2_buffer *vb = vb2_get_buffer(q, index);
	struct dma_buf *dmabuf;

	if (!vb || plane >= vb->num_planes)
		return NULL;
	dmabuf = vb2r_dmabuf_get(fd);
	if (dmabuf && dmabuf->priv != vb->planes[plane].mem_priv) {
		dma_buf_put(dmabuf);
		return NULL;
	}
	return dmabuf;
}

void vb2r_dmabuf_put(struct dma_buf *dmabuf)
{
	dma_buf_put(dmabuf);
}

struct vb2r_fence {
	struct dma_fence base;	/* first: the default release kfree_rcu()s the dma_fence pointer */
#if !VB2R_FENCE_INDEPENDENT
	spinlock_t lock;	/* old kernels have no inline fence lock (the fence pins the module) */
#endif
	char timeline[48];
};

static const char *vb2r_fence_driver_name(struct dma_fence *f)
{
	return "vb2_resv";
}

static const char *vb2r_fence_timeline_name(struct dma_fence *f)
{
	return container_of(f, struct vb2r_fence, base)->timeline;
}

#if !VB2R_FENCE_INDEPENDENT
/*
 * Old kernels: the last reference to one of our fences is gone. Free it as the core would
 * (kfree_rcu(); `base` is first) and drop the module reference the fence held. Returning from
 * here after module_put() is safe: an unload that this put makes possible waits in
 * vb2r_glue_exit() for RCU-tasks and RCU grace periods, which a task or an atomic context still
 * on these last instructions ends first.
 */
static void vb2r_fence_release(struct dma_fence *f)
{
	dma_fence_free(f);
	module_put(THIS_MODULE);
}
#endif

/* No .release and no .wait: on 7.2+ the core detaches these ops when the fence signals. */
static const struct dma_fence_ops vb2r_fence_ops = {
	.get_driver_name = vb2r_fence_driver_name,
	.get_timeline_name = vb2r_fence_timeline_name,
#if !VB2R_FENCE_INDEPENDENT
	.release = vb2r_fence_release,
#endif
};

u64 vb2r_fence_context(void)
{
	return dma_fence_context_alloc(1);
}

struct dma_fence *vb2r_fence_create(u64 context, u64 seqno, const char *timeline)
{
	struct vb2r_fence *f;

#if !VB2R_FENCE_INDEPENDENT
	/* The fence's reference on us (see vb2r_fence_release()); refused while unloading. */
	if (!try_module_get(THIS_MODULE))
		return NULL;
#endif
	f = kzalloc(sizeof(*f), GFP_KERNEL);
	if (!f) {
#if !VB2R_FENCE_INDEPENDENT
		module_put(THIS_MODULE);
#endif
		return NULL;
	}
	strscpy(f->timeline, timeline, sizeof(f->timeline));
#if VB2R_FENCE_INDEPENDENT
	/* NULL: the fence's inline lock, whose lockdep class belongs to the core. */
	dma_fence_init(&f->base, &vb2r_fence_ops, NULL, context, seqno);
#else
	spin_lock_init(&f->lock);
	dma_fence_init(&f->base, &vb2r_fence_ops, &f->lock, context, seqno);
#endif
	return &f->base;
}

/* Unlocks the first @n resvs of @bufs. */
static void vb2r_resv_unlock_all(struct dma_buf *const *bufs, u32 n)
{
	while (n--)
		dma_resv_unlock(bufs[n]->resv);
}

int vb2r_fence_publish(struct dma_buf *const *bufs, u32 n, struct dma_fence *fence)
{
	struct ww_acquire_ctx ctx;
	int contended = -1;
	u32 i;
	int ret;

	/* One dma-buf per export (and per imported plane): a handful, bounded for the stack. */
	if (n > 32)
		return -EINVAL;
	ww_acquire_init(&ctx, &reservation_ww_class);
retry:
	if (contended >= 0) {
		/* Backed off: wait for the contended lock first, holding nothing. */
		ret = dma_resv_lock_slow_interruptible(bufs[contended]->resv, &ctx);
		if (ret)
			goto fini;
	}
	for (i = 0; i < n; i++) {
		if ((int)i == contended)
			continue;
		ret = dma_resv_lock_interruptible(bufs[i]->resv, &ctx);
		if (!ret)
			continue;
		if (ret == -EALREADY)	/* the same dma-buf twice: the caller's bug */
			ret = -EINVAL;
		/* Drop everything we hold (the slow-locked one as well) and back off. */
		if (contended >= 0 && contended > (int)i)
			dma_resv_unlock(bufs[contended]->resv);
		vb2r_resv_unlock_all(bufs, i);
		if (ret == -EDEADLK) {
			contended = i;
			goto retry;
		}
		goto fini;
	}
	ww_acquire_done(&ctx);
	/* Everything that can fail or allocate, on every resv, before the fence is visible. */
	for (i = 0; i < n; i++) {
		ret = dma_resv_reserve_fences(bufs[i]->resv, 1);
		if (ret)
			goto unlock;
	}
	for (i = 0; i < n; i++)
		dma_resv_add_fence(bufs[i]->resv, fence, DMA_RESV_USAGE_WRITE);
	ret = 0;
unlock:
	vb2r_resv_unlock_all(bufs, n);
fini:
	ww_acquire_fini(&ctx);
	return ret;
}

bool vb2r_dmabuf_only_ours(struct dma_buf *dmabuf)
{
	return file_count(dmabuf->file) == 1;
}

void vb2r_fence_signal(struct dma_fence *fence, int error)
{
	bool cookie = dma_fence_begin_signalling();

	if (error && !dma_fence_is_signaled(fence))
		dma_fence_set_error(fence, error);
	dma_fence_signal(fence);
	dma_fence_end_signalling(cookie);
}

struct dma_fence *vb2r_fence_get(struct dma_fence *fence)
{
	return dma_fence_get(fence);
}

void vb2r_fence_put(struct dma_fence *fence)
{
	dma_fence_put(fence);
}

bool vb2r_fence_signaled(struct dma_fence *fence)
{
	return dma_fence_is_signaled(fence);
}

u64 vb2r_ktime_ns(void)
{
	return ktime_get_ns();
}

void vb2r_sleep_ms(u32 ms)
{
	msleep(ms);
}

/* ---------------------------------------------------------------------------------------------
 * Registration.
 */

/*
 * test_hardirq_signal: hantro returns buffers from its interrupt handler, the virtual drivers
 * from a kthread or a workqueue, so without help the suite never runs the signalling path in
 * hard IRQ. With the parameter set, each vb2_buf_done event is copied (queue address as a key,
 * index, state, time) into a slot and handed to an irq_work, which runs the same
 * vb2r_rs_buf_done() there, under lockdep. A plain irq_work runs in hard IRQ (a self-IPI on x86
 * and arm64) and lockdep treats it as a threadable interrupt handler, as hantro's is (a kthread
 * on PREEMPT_RT, like a forced-threaded handler). Not IRQ_WORK_HARD_IRQ: that is a raw hard-IRQ
 * context, in which the spinlock_t of a dma_fence (and ours) is invalid on PREEMPT_RT, and
 * lockdep says so ("Invalid wait context"); drivers that signal from IRQF_NO_THREAD handlers
 * have the same limit with every dma_fence. Test aid only: it delays the signal by an interrupt.
 */
static bool test_hardirq_signal;
module_param(test_hardirq_signal, bool, 0644);
MODULE_PARM_DESC(test_hardirq_signal, "test aid: signal fences from an irq_work (hard IRQ), as with a driver that returns buffers in its interrupt handler (default: off)");

#define VB2R_IRQ_SLOTS 64
struct vb2r_irq_event {
	struct irq_work work;
	struct vb2_queue *q;
	u32 index;
	u32 state;
	u64 event_ns;
};
static struct vb2r_irq_event vb2r_irq_events[VB2R_IRQ_SLOTS];
static DECLARE_BITMAP(vb2r_irq_busy, VB2R_IRQ_SLOTS);
static atomic_t vb2r_irq_hard = ATOMIC_INIT(0);
static atomic_t vb2r_irq_not_hard = ATOMIC_INIT(0);
static atomic_t vb2r_irq_in_place = ATOMIC_INIT(0);

static void vb2r_irq_event_run(struct irq_work *w)
{
	struct vb2r_irq_event *e = container_of(w, struct vb2r_irq_event, work);

	atomic_inc(in_hardirq() ? &vb2r_irq_hard : &vb2r_irq_not_hard);
	vb2r_rs_buf_done(e->q, NULL, e->index, e->state, e->event_ns);
	/* The slot's fields are not read after this. */
	clear_bit_unlock(e - vb2r_irq_events, vb2r_irq_busy);
}

/* Hands the event to a free slot's irq_work; false when every slot is busy. */
static bool vb2r_irq_defer(struct vb2_queue *q, u32 index, u32 state, u64 event_ns)
{
	unsigned int i;

	for (i = 0; i < VB2R_IRQ_SLOTS; i++) {
		struct vb2r_irq_event *e = &vb2r_irq_events[i];

		if (test_and_set_bit_lock(i, vb2r_irq_busy))
			continue;
		e->q = q;
		e->index = index;
		e->state = state;
		e->event_ns = event_ns;
		irq_work_queue(&e->work);
		return true;
	}
	return false;
}

/*
 * Test aid for fence.requeue-race: spin this long in the probe before handling the event, which
 * widens the window in which the buffer is already on the done list (and can be dequeued and
 * queued again on another CPU) while its event is not handled yet. 0 (default): off.
 */
static uint test_buf_done_delay_us;
module_param(test_buf_done_delay_us, uint, 0644);
MODULE_PARM_DESC(test_buf_done_delay_us, "test aid: busy-wait this many microseconds (at most 10000) in the vb2_buf_done probe before handling the event (default: 0)");

static void vb2r_probe_buf_done(void *data, struct vb2_queue *q, struct vb2_buffer *vb)
{
	uint delay = READ_ONCE(test_buf_done_delay_us);

	if (delay)
		udelay(min(delay, 10000U));
	if (READ_ONCE(test_hardirq_signal) && !in_hardirq()) {
		if (vb2r_irq_defer(q, vb->index, vb2r_vb_state(vb), ktime_get_ns()))
			return;
		atomic_inc(&vb2r_irq_in_place);
	}
	/* In place: Rust reads the buffer's current state under its fence lock. */
	vb2r_rs_buf_done(q, vb, vb->index, vb2r_vb_state(vb), U64_MAX);
}

static DEFINE_MUTEX(vb2r_probe_mutex);
static bool vb2r_probe_registered;

void vb2r_glue_init(void)
{
	unsigned int i;

	for (i = 0; i < VB2R_IRQ_SLOTS; i++)
		init_irq_work(&vb2r_irq_events[i].work, vb2r_irq_event_run);
}

int vb2r_probe_register(void)
{
	int ret = 0;

	mutex_lock(&vb2r_probe_mutex);
	if (!vb2r_probe_registered) {
		ret = register_trace_vb2_buf_done(vb2r_probe_buf_done, NULL);
		vb2r_probe_registered = !ret;
	}
	mutex_unlock(&vb2r_probe_mutex);
	return ret;
}

void vb2r_probe_unregister(void)
{
	mutex_lock(&vb2r_probe_mutex);
	if (vb2r_probe_registered) {
		unregister_trace_vb2_buf_done(vb2r_probe_buf_done, NULL);
		tracepoint_synchronize_unregister();
		vb2r_probe_registered = false;
	}
	mutex_unlock(&vb2r_probe_mutex);
}

void vb2r_glue_exit(void)
{
	struct vb2r_hooks *h, *tmp;
	unsigned long waited = 0;
	unsigned int i;

	/* Every node is detached: remove_dev finds nothing to do from here on. */
	mutex_lock(&vb2r_class_mutex);
	if (vb2r_class_registered)
		class_interface_unregister(&vb2r_class_intf);
	vb2r_class_registered = false;
	mutex_unlock(&vb2r_class_mutex);
	vb2r_probe_unregister();
	/* No probe runs any more: wait for the events it handed to irq_works. */
	for (i = 0; i < VB2R_IRQ_SLOTS; i++)
		irq_work_sync(&vb2r_irq_events[i].work);
	if (atomic_read(&vb2r_irq_hard) || atomic_read(&vb2r_irq_not_hard) ||
	    atomic_read(&vb2r_irq_in_place))
		pr_info("vb2_resv: test_hardirq_signal: %d buffer-done events handled in hard IRQ, %d in an irq_work outside it, %d in place (no free slot)\n",
			atomic_read(&vb2r_irq_hard), atomic_read(&vb2r_irq_not_hard),
			atomic_read(&vb2r_irq_in_place));
	/* 1. A task may have read one of our wrapper pointers just before the entries were restored. */
	synchronize_rcu_tasks();
	/* 2. The wrappers running now, including those asleep in a driver's DQBUF. */
	while (!wait_event_timeout(vb2r_inflight_wq, atomic_read(&vb2r_inflight) == 0, 5 * HZ)) {
		waited += 5;
		pr_info("vb2_resv: unload waits for %d hooked ioctl(s) still running (%lu s)\n",
			atomic_read(&vb2r_inflight), waited);
	}
	/* 3. A wrapper that dropped the counter may still be on its last instructions. */
	synchronize_rcu_tasks();
	/*
	 * The tables stay: a task that read a table pointer before it was restored may be asleep
	 * on the V4L2 serialization lock and read an entry (now the driver's own) at any time.
	 */
	mutex_lock(&vb2r_hooks_mutex);
	list_for_each_entry_safe(h, tmp, &vb2r_hooks_list, list) {
		list_del(&h->list);
		kmemleak_not_leak(h);
	}
	mutex_unlock(&vb2r_hooks_mutex);
	/* Let call_rcu callbacks and RCU readers of our fences' ops finish before the text goes. */
	synchronize_rcu();
}
