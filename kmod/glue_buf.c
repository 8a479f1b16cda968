// SPDX-License-Identifier: GPL-2.0
/*
 * vb2_resv C glue: queues and buffers (struct access), and the m2m job state mode strict reads;
 * the media device's request hook.
 * The contracts are in glue.h; no policy here (see glue.c).
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
#include <linux/sync_file.h>
#include <linux/workqueue.h>
#include <linux/version.h>
#include <linux/videodev2.h>
#include <media/v4l2-dev.h>
#include <media/v4l2-device.h>
#include <media/v4l2-fh.h>
#include <media/v4l2-ioctl.h>
#include <media/v4l2-mem2mem.h>
#include <media/media-device.h>
#include <media/media-request.h>
#include <media/videobuf2-core.h>
#include <media/videobuf2-v4l2.h>
#include <trace/events/vb2.h>

#include "glue.h"
#include "glue_internal.h"

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

u32 vb2r_buffer_state_memory(struct vb2_queue *q, u32 index, u32 *memory)
{
	*memory = q->memory;
	return vb2r_buffer_state(q, index);
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
 * Mode strict: m2m job state.
 */

static struct v4l2_m2m_ctx *vb2r_m2m_ctx(struct vb2_queue *cap_q)
{
	return container_of(cap_q, struct v4l2_m2m_ctx, cap_q_ctx.q);
}

struct vb2_queue *vb2r_m2m_out_queue(struct vb2_queue *cap_q)
{
	return &vb2r_m2m_ctx(cap_q)->out_q_ctx.q;
}

static void vb2r_snap_fill(struct vb2r_snap_buf *b, struct vb2_v4l2_buffer *vbuf, bool out)
{
	b->index = vbuf->vb2_buf.index;
	b->hold = out ? !!(vbuf->flags & V4L2_BUF_FLAG_M2M_HOLD_CAPTURE_BUF) : vbuf->is_held;
	b->ts_valid = vbuf->vb2_buf.copied_timestamp;
	b->ts = vbuf->vb2_buf.timestamp;
}

/* The ready queue of one side, in order, under its spinlock. */
static u32 vb2r_snap_rdy(struct v4l2_m2m_queue_ctx *qc, struct vb2r_snap_buf *out, bool is_out)
{
	struct v4l2_m2m_buffer *b;
	unsigned long flags;
	u32 n = 0;

	spin_lock_irqsave(&qc->rdy_spinlock, flags);
	list_for_each_entry(b, &qc->rdy_queue, list) {
		if (n < VB2R_SNAP_MAX)
			vb2r_snap_fill(&out[n], &b->vb, is_out);
		n++;
	}
	spin_unlock_irqrestore(&qc->rdy_spinlock, flags);
	return n;
}

u32 vb2r_queue_vb2_queued(struct vb2_queue *q, struct vb2r_snap_buf *out, u32 max)
{
	struct vb2_buffer *vb;
	u32 n = 0;

	list_for_each_entry(vb, &q->queued_list, queued_entry) {
		if (vb->state != VB2_BUF_STATE_QUEUED)
			continue;
		if (n < max)
			vb2r_snap_fill(&out[n], to_vb2_v4l2_buffer(vb), V4L2_TYPE_IS_OUTPUT(q->type));
		n++;
	}
	return n;
}

void vb2r_m2m_snapshot(struct vb2_queue *cap_q, struct vb2r_m2m_snap *s, bool vb2_held)
{
	struct v4l2_m2m_ctx *ctx = vb2r_m2m_ctx(cap_q);

	s->out_streaming = ctx->out_q_ctx.q.start_streaming_called;
	s->cap_streaming = ctx->cap_q_ctx.q.start_streaming_called;
	s->ignore_cap_streaming = ctx->ignore_cap_streaming;
	s->nsrc = vb2r_snap_rdy(&ctx->out_q_ctx, s->src, true);
	s->ndst = vb2r_snap_rdy(&ctx->cap_q_ctx, s->dst, false);
	if (!vb2_held) {
		s->nsrc_vb2 = 0;
		s->ndst_vb2 = 0;
		return;
	}
	s->nsrc_vb2 = vb2r_queue_vb2_queued(&ctx->out_q_ctx.q, s->src_vb2, VB2R_SNAP_MAX);
	s->ndst_vb2 = vb2r_queue_vb2_queued(&ctx->cap_q_ctx.q, s->dst_vb2, VB2R_SNAP_MAX);
}

u32 vb2r_m2m_src_ready(struct vb2_queue *cap_q)
{
	return v4l2_m2m_num_src_bufs_ready(vb2r_m2m_ctx(cap_q));
}

u32 vb2r_queue_streaming(struct vb2_queue *q)
{
	return q->start_streaming_called;
}

void vb2r_vb_output_info(struct vb2_buffer *vb, u32 *hold, u64 *ts)
{
	*hold = !!(to_vb2_v4l2_buffer(vb)->flags & V4L2_BUF_FLAG_M2M_HOLD_CAPTURE_BUF);
	*ts = vb->timestamp;
}

/* Media device tables: like the ioctl tables, never freed, restored entry by entry. */
struct vb2r_mdev_hooks {
	struct list_head list;
	struct media_device *mdev;
	const struct media_device_ops *orig;
	struct media_device_ops ops;
	unsigned int users;	/* attached nodes on this media device */
};
static LIST_HEAD(vb2r_mdev_list);

/* Up to this many OUTPUT buffers of one request are passed on (a request carries one). */
#define VB2R_REQ_MAX 4

static void vb2r_w_req_queue(struct media_request *req)
{
	struct vb2r_mdev_hooks *h, *found = NULL;
	struct vb2r_req_buf bufs[VB2R_REQ_MAX];
	struct media_request_object *obj;
	u32 n = 0;

	vb2r_enter_count();
	rcu_read_lock();
	list_for_each_entry_rcu(h, &vb2r_mdev_list, list) {
		if (h->mdev == req->mdev) {
			found = h;
			break;
		}
	}
	rcu_read_unlock();
	if (WARN_ON_ONCE(!found)) {
		vb2r_exit_call();
		return;
	}
	/* req_queue_mutex is held and the request is validated: its objects do not change. */
	list_for_each_entry(obj, &req->objects, list) {
		struct vb2_buffer *vb;

		if (!vb2_request_object_is_buffer(obj))
			continue;
		vb = container_of(obj, struct vb2_buffer, req_obj);
		if (!V4L2_TYPE_IS_OUTPUT(vb->vb2_queue->type) || n == VB2R_REQ_MAX)
			continue;
		bufs[n].q = vb->vb2_queue;
		bufs[n].index = vb->index;
		vb2r_vb_output_info(vb, &bufs[n].hold, &bufs[n].ts);
		n++;
	}
	{
		struct mutex *lock = n ? bufs[0].q->lock : NULL;

		if (lock) {
			mutex_lock(lock);
			(void)vb2r_rs_req_queue(NULL, bufs, n);
			mutex_unlock(lock);
		}
		/*
		 * Not a signalling section, although the job may run inside (visl): the m2m request
		 * path takes the queue lock again (vb2_req_queue()), and that lock is held across
		 * GFP_KERNEL allocations (REQBUFS), which lockdep reports against the published
		 * fence. See docs/design.md, "Mode strict".
		 */
		found->orig->req_queue(req);
	}
	vb2r_exit_call();
}

static struct media_device *vb2r_vdev_mdev(struct video_device *vdev)
{
	return vdev->v4l2_dev ? vdev->v4l2_dev->mdev : NULL;
}

int vb2r_mdev_hooks_install(struct video_device *vdev, void *rs_node)
{
	struct media_device *mdev = vb2r_vdev_mdev(vdev);
	struct vb2r_mdev_hooks *h;

	if (!mdev || !mdev->ops || !mdev->ops->req_queue)
		return 0;
	mutex_lock(&vb2r_hooks_mutex);
	list_for_each_entry(h, &vb2r_mdev_list, list) {
		if (h->mdev == mdev && (h->users || h->orig == mdev->ops))
			goto arm;
	}
	h = kzalloc(sizeof(*h), GFP_KERNEL);
	if (!h) {
		mutex_unlock(&vb2r_hooks_mutex);
		return -ENOMEM;
	}
	h->mdev = mdev;
	h->orig = mdev->ops;
	h->ops = *mdev->ops;
	list_add_rcu(&h->list, &vb2r_mdev_list);
arm:
	if (!h->users++) {
		WRITE_ONCE(h->ops.req_queue, vb2r_w_req_queue);
		smp_wmb();
		WRITE_ONCE(mdev->ops, &h->ops);
	}
	mutex_unlock(&vb2r_hooks_mutex);
	return 1;
}

void vb2r_mdev_hooks_remove(struct video_device *vdev)
{
	struct media_device *mdev = vb2r_vdev_mdev(vdev);
	struct vb2r_mdev_hooks *h;

	if (!mdev)
		return;
	mutex_lock(&vb2r_hooks_mutex);
	list_for_each_entry(h, &vb2r_mdev_list, list) {
		if (h->mdev != mdev || !h->users)
			continue;
		if (!--h->users) {
			WRITE_ONCE(mdev->ops, h->orig);
			WRITE_ONCE(h->ops.req_queue, h->orig->req_queue);
		}
		break;
	}
	mutex_unlock(&vb2r_hooks_mutex);
}

void vb2r_mdev_leak_all(void)
{
	struct vb2r_mdev_hooks *h, *tmp;

	/* As the ioctl tables (vb2r_hooks_leak_all()). */
	mutex_lock(&vb2r_hooks_mutex);
	list_for_each_entry_safe(h, tmp, &vb2r_mdev_list, list) {
		list_del(&h->list);
		kmemleak_not_leak(h);
	}
	mutex_unlock(&vb2r_hooks_mutex);
}
