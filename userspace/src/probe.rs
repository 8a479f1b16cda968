//! What the verifier sees of the machine (`vb2-resv probe`): media devices and their topology,
//! the stateless decoders with the codecs and CAPTURE formats they offer, the `vb2_resv` module
//! (loaded, mode, attached nodes) and, on device-tree systems, whether the GPU and VPU nodes
//! say `dma-coherent`.
//!
//! The media controller ioctls are hand-written here (v4l2r has the request ioctls only).

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::ffi::CStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use v4l2r::ioctl::{self, Capabilities, FormatIterator};
use v4l2r::{PixelFormat, QueueType};

// <linux/media.h>
#[repr(C)]
struct MediaDeviceInfo {
    driver: [u8; 16],
    model: [u8; 32],
    serial: [u8; 40],
    bus_info: [u8; 32],
    media_version: u32,
    hw_revision: u32,
    driver_version: u32,
    reserved: [u32; 31],
}

#[repr(C, packed)]
#[derive(Clone, Copy)]
struct MediaV2Entity {
    id: u32,
    name: [u8; 64],
    function: u32,
    flags: u32,
    reserved: [u32; 5],
}

#[repr(C, packed)]
#[derive(Clone, Copy)]
struct MediaV2Interface {
    id: u32,
    intf_type: u32,
    flags: u32,
    reserved: [u32; 9],
    /// `devnode.major`, `devnode.minor`, then the rest of the union.
    raw: [u32; 16],
}

#[repr(C, packed)]
#[derive(Clone, Copy)]
struct MediaV2Pad {
    id: u32,
    entity_id: u32,
    flags: u32,
    index: u32,
    reserved: [u32; 4],
}

#[repr(C, packed)]
#[derive(Clone, Copy)]
struct MediaV2Link {
    id: u32,
    source_id: u32,
    sink_id: u32,
    flags: u32,
    reserved: [u32; 6],
}

#[repr(C, packed)]
#[derive(Default)]
struct MediaV2Topology {
    topology_version: u64,
    num_entities: u32,
    reserved1: u32,
    ptr_entities: u64,
    num_interfaces: u32,
    reserved2: u32,
    ptr_interfaces: u64,
    num_pads: u32,
    reserved3: u32,
    ptr_pads: u64,
    num_links: u32,
    reserved4: u32,
    ptr_links: u64,
}

nix::ioctl_readwrite!(media_ioc_device_info, b'|', 0x00, MediaDeviceInfo);
nix::ioctl_readwrite!(media_ioc_g_topology, b'|', 0x04, MediaV2Topology);

const MEDIA_INTF_T_V4L_VIDEO: u32 = 0x200;
const MEDIA_LNK_FL_ENABLED: u32 = 1;
const MEDIA_LNK_FL_IMMUTABLE: u32 = 2;
const MEDIA_LNK_FL_INTERFACE_LINK: u32 = 1 << 28;

fn cstr(b: &[u8]) -> String {
    CStr::from_bytes_until_nul(b)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|_| String::from_utf8_lossy(b).into_owned())
}

/// An entity of a media graph.
#[derive(Clone, Debug, Serialize)]
pub struct Entity {
    pub id: u32,
    pub name: String,
    /// MEDIA_ENT_F_* as a name where known, else the number in hex.
    pub function: String,
}

/// An interface (a device node) of a media graph.
#[derive(Clone, Debug, Serialize)]
pub struct Interface {
    pub id: u32,
    pub intf_type: String,
    pub major: u32,
    pub minor: u32,
    /// The /dev node with that major:minor, if there is one.
    pub devnode: Option<String>,
}

/// A link of a media graph (data links between pads, interface links between an interface and
/// an entity).
#[derive(Clone, Debug, Serialize)]
pub struct Link {
    pub source: String,
    pub sink: String,
    pub kind: &'static str,
    pub enabled: bool,
    pub immutable: bool,
}

/// One media device, from MEDIA_IOC_DEVICE_INFO and MEDIA_IOC_G_TOPOLOGY.
#[derive(Clone, Debug, Serialize)]
pub struct MediaDevice {
    pub path: String,
    pub driver: String,
    pub model: String,
    pub bus_info: String,
    pub media_version: String,
    pub topology_version: u64,
    pub entities: Vec<Entity>,
    pub interfaces: Vec<Interface>,
    pub links: Vec<Link>,
}

fn entity_function(f: u32) -> String {
    match f {
        0x10001 => "IO_V4L".into(),
        0x4001 => "PROC_VIDEO_COMPOSER".into(),
        0x4002 => "PROC_VIDEO_PIXEL_FORMATTER".into(),
        0x4003 => "PROC_VIDEO_PIXEL_ENC_CONV".into(),
        0x4005 => "PROC_VIDEO_SCALER".into(),
        0x4007 => "PROC_VIDEO_ENCODER".into(),
        0x4008 => "PROC_VIDEO_DECODER".into(),
        0x20001 => "CAM_SENSOR".into(),
        0 => "UNKNOWN".into(),
        f => format!("{f:#x}"),
    }
}

fn intf_type(t: u32) -> String {
    match t {
        0x200 => "V4L_VIDEO".into(),
        0x201 => "V4L_VBI".into(),
        0x202 => "V4L_RADIO".into(),
        0x203 => "V4L_SUBDEV".into(),
        0x204 => "V4L_SWRADIO".into(),
        0x205 => "V4L_TOUCH".into(),
        t => format!("{t:#x}"),
    }
}

/// The character devices under /dev by device number (the first name in sorted order).
fn dev_map() -> std::collections::HashMap<u64, String> {
    let mut names: Vec<(u64, String)> = std::fs::read_dir("/dev")
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let m = e.metadata().ok()?;
                    m.file_type()
                        .is_char_device()
                        .then(|| (m.rdev(), e.path().to_string_lossy().into_owned()))
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut map = std::collections::HashMap::new();
    for (rdev, name) in names {
        map.entry(rdev).or_insert(name);
    }
    map
}

/// MEDIA_IOC_DEVICE_INFO and MEDIA_IOC_G_TOPOLOGY of one media device; interface device
/// numbers are named from `devs` (see [`media_devices`]) when given.
pub fn media_device(
    path: &Path,
    devs: Option<&std::collections::HashMap<u64, String>>,
) -> Result<MediaDevice> {
    let f = File::options()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut info = MediaDeviceInfo {
        driver: [0; 16],
        model: [0; 32],
        serial: [0; 40],
        bus_info: [0; 32],
        media_version: 0,
        hw_revision: 0,
        driver_version: 0,
        reserved: [0; 31],
    };
    // SAFETY: `info` is MEDIA_IOC_DEVICE_INFO's argument struct.
    unsafe { media_ioc_device_info(f.as_raw_fd(), &mut info) }
        .with_context(|| format!("{}: MEDIA_IOC_DEVICE_INFO", path.display()))?;

    // Ask for the counts, then for the arrays; retry if the graph changed in between.
    let mut tries = 0;
    let (topo, ents, intfs, pads, links) = loop {
        tries += 1;
        let mut t = MediaV2Topology::default();
        // SAFETY: all array pointers are null: the kernel only fills in the counts.
        unsafe { media_ioc_g_topology(f.as_raw_fd(), &mut t) }
            .with_context(|| format!("{}: MEDIA_IOC_G_TOPOLOGY", path.display()))?;
        let version = t.topology_version;
        let mut ents = vec![
            MediaV2Entity {
                id: 0,
                name: [0; 64],
                function: 0,
                flags: 0,
                reserved: [0; 5]
            };
            t.num_entities as usize
        ];
        let mut intfs = vec![
            MediaV2Interface {
                id: 0,
                intf_type: 0,
                flags: 0,
                reserved: [0; 9],
                raw: [0; 16]
            };
            t.num_interfaces as usize
        ];
        let mut pads = vec![
            MediaV2Pad {
                id: 0,
                entity_id: 0,
                flags: 0,
                index: 0,
                reserved: [0; 4]
            };
            t.num_pads as usize
        ];
        let mut links = vec![
            MediaV2Link {
                id: 0,
                source_id: 0,
                sink_id: 0,
                flags: 0,
                reserved: [0; 6]
            };
            t.num_links as usize
        ];
        t.ptr_entities = ents.as_mut_ptr() as u64;
        t.ptr_interfaces = intfs.as_mut_ptr() as u64;
        t.ptr_pads = pads.as_mut_ptr() as u64;
        t.ptr_links = links.as_mut_ptr() as u64;
        // SAFETY: each array has room for the count the kernel gave just before; if the graph
        // grew meanwhile the kernel fails with ENOSPC instead of writing past them.
        let r = unsafe { media_ioc_g_topology(f.as_raw_fd(), &mut t) };
        match r {
            Ok(_) if t.topology_version == version => break (t, ents, intfs, pads, links),
            Ok(_) | Err(nix::errno::Errno::ENOSPC) if tries < 5 => continue,
            Ok(_) => bail!("{}: the media graph keeps changing", path.display()),
            Err(e) => {
                return Err(e).with_context(|| format!("{}: MEDIA_IOC_G_TOPOLOGY", path.display()))
            }
        }
    };
    let n_ents = topo.num_entities as usize;
    let n_intfs = topo.num_interfaces as usize;
    let n_pads = topo.num_pads as usize;
    let n_links = topo.num_links as usize;
    let entities: Vec<Entity> = ents[..n_ents.min(ents.len())]
        .iter()
        .map(|e| Entity {
            id: e.id,
            name: cstr(&{ e.name }),
            function: entity_function(e.function),
        })
        .collect();
    let interfaces: Vec<Interface> = intfs[..n_intfs.min(intfs.len())]
        .iter()
        .map(|i| {
            let raw = i.raw;
            Interface {
                id: i.id,
                intf_type: intf_type(i.intf_type),
                major: raw[0],
                minor: raw[1],
                devnode: devs.and_then(|d| {
                    d.get(&nix::sys::stat::makedev(raw[0] as u64, raw[1] as u64))
                        .cloned()
                }),
            }
        })
        .collect();
    let pads = &pads[..n_pads.min(pads.len())];
    let name_of = |id: u32| -> String {
        if let Some(e) = entities.iter().find(|e| e.id == id) {
            return format!("entity '{}'", e.name);
        }
        if let Some(i) = interfaces.iter().find(|i| i.id == id) {
            return match &i.devnode {
                Some(d) => format!("interface {d}"),
                None => format!("interface {}:{}", i.major, i.minor),
            };
        }
        if let Some(p) = pads.iter().find(|p| p.id == id) {
            let ent = p.entity_id;
            let ename = entities
                .iter()
                .find(|e| e.id == ent)
                .map(|e| e.name.clone())
                .unwrap_or_else(|| format!("#{ent}"));
            let dir = if p.flags & 1 != 0 { "sink" } else { "source" };
            return format!("'{ename}' pad {} ({dir})", { p.index });
        }
        format!("#{id}")
    };
    let links = links[..n_links.min(links.len())]
        .iter()
        .map(|l| Link {
            source: name_of(l.source_id),
            sink: name_of(l.sink_id),
            kind: if l.flags & 0xf000_0000 == MEDIA_LNK_FL_INTERFACE_LINK {
                "interface"
            } else {
                "data"
            },
            enabled: l.flags & MEDIA_LNK_FL_ENABLED != 0,
            immutable: l.flags & MEDIA_LNK_FL_IMMUTABLE != 0,
        })
        .collect();
    let v = info.media_version;
    Ok(MediaDevice {
        path: path.display().to_string(),
        driver: cstr(&info.driver),
        model: cstr(&info.model),
        bus_info: cstr(&info.bus_info),
        media_version: format!("{}.{}.{}", v >> 16, (v >> 8) & 0xff, v & 0xff),
        topology_version: topo.topology_version,
        entities,
        interfaces,
        links,
    })
}

/// `/dev/<prefix>N` for every `<prefix>N` entry of `dir`, in numeric order.
fn numbered(dir: &str, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    let num = n.strip_prefix(prefix)?.parse::<u32>().ok()?;
                    Some((num, PathBuf::from(format!("/dev/{n}"))))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.into_iter().map(|(_, p)| p).collect()
}

/// Every /dev/mediaN that answers MEDIA_IOC_DEVICE_INFO, with the errors of those that do not.
pub fn media_devices() -> (Vec<MediaDevice>, Vec<String>) {
    let devs = dev_map();
    let mut ok = Vec::new();
    let mut errs = Vec::new();
    for p in numbered("/sys/bus/media/devices", "media") {
        match media_device(&p, Some(&devs)) {
            Ok(m) => ok.push(m),
            Err(e) => errs.push(format!("{e:#}")),
        }
    }
    (ok, errs)
}

/// The media device whose graph has a V4L video interface for `video` (same major:minor).
pub fn media_for_video(video: &Path) -> Option<PathBuf> {
    let rdev = std::fs::metadata(video).ok()?.rdev();
    let (maj, min) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    for p in numbered("/sys/bus/media/devices", "media") {
        let Ok(m) = media_device(&p, None) else {
            continue;
        };
        if m.interfaces.iter().any(|i| {
            i.intf_type == intf_type(MEDIA_INTF_T_V4L_VIDEO)
                && i.major as u64 == maj
                && i.minor as u64 == min
        }) {
            return Some(p);
        }
    }
    None
}

/// The stateless (request API) coded formats V4L2 defines, with a short codec name.
pub const STATELESS_FORMATS: &[(&[u8; 4], &str)] = &[
    (b"S264", "H.264"),
    (b"S265", "HEVC"),
    (b"VP8F", "VP8"),
    (b"VP9F", "VP9"),
    (b"MG2S", "MPEG-2"),
    (b"AV1F", "AV1"),
    (b"SFWH", "FWHT"),
];

/// A menu control's offered values (VIDIOC_QUERYMENU over [min, max]) and its current value.
#[derive(Clone, Debug, Serialize)]
pub struct Menu {
    pub offered: Vec<String>,
    pub default: String,
}

/// One stateless codec of a decoder node.
#[derive(Clone, Debug, Serialize)]
pub struct StatelessCodec {
    pub codec: String,
    pub fourcc: String,
    /// The CAPTURE formats offered once the OUTPUT format is this codec.
    pub capture_formats: Vec<String>,
    /// For H.264: the decode-mode and start-code menus.
    pub decode_modes: Option<Menu>,
    pub start_codes: Option<Menu>,
}

/// One V4L2 video node.
#[derive(Clone, Debug, Serialize)]
pub struct VideoNode {
    pub path: String,
    pub driver: String,
    pub card: String,
    pub bus_info: String,
    pub mplane: bool,
    pub m2m: bool,
    pub output_formats: Vec<String>,
    pub capture_formats: Vec<String>,
    /// Non-empty for a stateless decoder.
    pub stateless: Vec<StatelessCodec>,
    pub requests: bool,
    pub hold_capture_buf: bool,
    pub media: Option<String>,
    /// vb2_resv's view of this node: "attached", "detached" (known but detached), or none.
    pub vb2_resv: Option<String>,
}

fn fourcc_name(p: PixelFormat) -> String {
    p.to_string()
}

fn formats(dev: &File, qt: QueueType) -> Vec<PixelFormat> {
    FormatIterator::new(dev, qt)
        .map(|f| f.pixelformat)
        .collect()
}

pub const CID_H264_DECODE_MODE: u32 = v4l2r::bindings::V4L2_CID_STATELESS_H264_DECODE_MODE;
pub const CID_H264_START_CODE: u32 = v4l2r::bindings::V4L2_CID_STATELESS_H264_START_CODE;

/// The values of a menu control the driver offers (indices in [min, max] QUERYMENU accepts),
/// with their names, and its default.
pub fn menu(dev: &File, id: u32) -> Option<(Vec<(u32, String)>, u32)> {
    let q: v4l2r::bindings::v4l2_query_ext_ctrl = ioctl::query_ext_ctrl(
        dev,
        ioctl::CtrlId::new(id).ok()?,
        ioctl::QueryCtrlFlags::empty(),
    )
    .ok()?;
    let mut out = Vec::new();
    for i in q.minimum.max(0)..=q.maximum.max(0) {
        if let Ok(m) = ioctl::querymenu::<v4l2r::bindings::v4l2_querymenu>(dev, id, i as u32) {
            // SAFETY: a menu (not an integer menu) control: the union holds the name.
            let name = unsafe { m.__bindgen_anon_1.name };
            out.push((i as u32, cstr(&name)));
        }
    }
    Some((out, q.default_value as u32))
}

fn menu_summary(dev: &File, id: u32) -> Option<Menu> {
    let (items, def) = menu(dev, id)?;
    let default = items
        .iter()
        .find(|(i, _)| *i == def)
        .map(|(_, n)| n.clone())
        .unwrap_or_else(|| def.to_string());
    Some(Menu {
        offered: items.into_iter().map(|(_, n)| n).collect(),
        default,
    })
}

/// The request-API buffer capabilities of a queue (REQBUFS with count 0 reports them).
fn buf_caps(dev: &File, qt: QueueType) -> u32 {
    ioctl::reqbufs::<v4l2r::bindings::v4l2_requestbuffers>(
        dev,
        qt,
        v4l2r::memory::MemoryType::Mmap,
        0,
        ioctl::MemoryConsistency::empty(),
    )
    .map(|r| r.capabilities)
    .unwrap_or(0)
}

/// Looks at one video node. For a mem2mem node, the stateless codecs are tried one by one on
/// this file handle's own context (S_FMT OUTPUT, then ENUM_FMT CAPTURE): nobody else sees it.
pub fn video_node(path: &Path) -> Result<VideoNode> {
    let mut dev = crate::v4l2::open(path)?;
    let cap: ioctl::Capability = ioctl::querycap(&dev)
        .map_err(|e| anyhow::anyhow!("{}: VIDIOC_QUERYCAP: {e}", path.display()))?;
    let caps = cap.device_caps();
    let mplane = caps.intersects(
        Capabilities::VIDEO_M2M_MPLANE
            | Capabilities::VIDEO_CAPTURE_MPLANE
            | Capabilities::VIDEO_OUTPUT_MPLANE,
    );
    let m2m = caps.intersects(Capabilities::VIDEO_M2M_MPLANE | Capabilities::VIDEO_M2M);
    let (out_q, cap_q) = if mplane {
        (QueueType::VideoOutputMplane, QueueType::VideoCaptureMplane)
    } else {
        (QueueType::VideoOutput, QueueType::VideoCapture)
    };
    let has_out = caps.intersects(
        Capabilities::VIDEO_M2M_MPLANE
            | Capabilities::VIDEO_M2M
            | Capabilities::VIDEO_OUTPUT
            | Capabilities::VIDEO_OUTPUT_MPLANE,
    );
    let has_cap = caps.intersects(
        Capabilities::VIDEO_M2M_MPLANE
            | Capabilities::VIDEO_M2M
            | Capabilities::VIDEO_CAPTURE
            | Capabilities::VIDEO_CAPTURE_MPLANE,
    );
    let output = if has_out {
        formats(&dev, out_q)
    } else {
        vec![]
    };
    let capture = if has_cap {
        formats(&dev, cap_q)
    } else {
        vec![]
    };
    let mut stateless = Vec::new();
    if m2m {
        for (fcc, codec) in STATELESS_FORMATS {
            let pf = PixelFormat::from_fourcc(fcc);
            if !output.contains(&pf) {
                continue;
            }
            let fmt = v4l2r::Format {
                width: 320,
                height: 240,
                pixelformat: pf,
                plane_fmt: vec![],
            };
            let capture_formats = match ioctl::s_fmt::<_, v4l2r::Format>(&mut dev, (out_q, &fmt)) {
                Ok(_) => formats(&dev, cap_q).into_iter().map(fourcc_name).collect(),
                Err(_) => vec![],
            };
            let h264 = *fcc == b"S264";
            stateless.push(StatelessCodec {
                codec: codec.to_string(),
                fourcc: fourcc_name(pf),
                capture_formats,
                decode_modes: if h264 {
                    menu_summary(&dev, CID_H264_DECODE_MODE)
                } else {
                    None
                },
                start_codes: if h264 {
                    menu_summary(&dev, CID_H264_START_CODE)
                } else {
                    None
                },
            });
        }
    }
    let out_caps = if has_out { buf_caps(&dev, out_q) } else { 0 };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(VideoNode {
        path: path.display().to_string(),
        driver: cap.driver.clone(),
        card: cap.card.clone(),
        bus_info: cap.bus_info.clone(),
        mplane,
        m2m,
        output_formats: output.into_iter().map(fourcc_name).collect(),
        capture_formats: capture.into_iter().map(fourcc_name).collect(),
        stateless,
        requests: out_caps & v4l2r::bindings::V4L2_BUF_CAP_SUPPORTS_REQUESTS != 0,
        hold_capture_buf: out_caps & v4l2r::bindings::V4L2_BUF_CAP_SUPPORTS_M2M_HOLD_CAPTURE_BUF
            != 0,
        media: media_for_video(path).map(|p| p.display().to_string()),
        vb2_resv: module_node_state(&name),
    })
}

/// Every /dev/videoN, looked at; nodes that cannot be opened are reported as errors.
pub fn video_nodes() -> (Vec<VideoNode>, Vec<String>) {
    let mut ok = Vec::new();
    let mut errs = Vec::new();
    for p in numbered("/sys/class/video4linux", "video") {
        match video_node(&p) {
            Ok(n) => ok.push(n),
            Err(e) => errs.push(format!("{e:#}")),
        }
    }
    (ok, errs)
}

/// Why `path` cannot be used as a stateless H.264 decoder, or its node description.
pub fn check_h264_decoder(path: &Path) -> Result<VideoNode> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot open {}", path.display()))?;
    if !meta.file_type().is_char_device() {
        bail!("{} is not a device node", path.display());
    }
    let n = video_node(path)?;
    if !n.m2m {
        bail!(
            "{} ({}, {}) is not a stateless H.264 decoder: not a mem2mem device",
            path.display(),
            n.driver,
            n.card
        );
    }
    if !n.stateless.iter().any(|c| c.fourcc.starts_with("S264")) {
        bail!(
            "{} ({}, {}) is not a stateless H.264 decoder: its OUTPUT side offers no H264_SLICE (S264) but [{}]",
            path.display(),
            n.driver,
            n.card,
            n.output_formats.join(", ")
        );
    }
    if !n.mplane {
        bail!(
            "{} ({}) uses the single-planar API: only the multi-planar API is supported",
            path.display(),
            n.driver
        );
    }
    Ok(n)
}

/// The stateless H.264 decoder of the machine with its media device: hantro's if there are
/// several (the PineTab2's RK3566 decodes H.264 with hantro), else the first by node number.
pub fn find_h264_decoder() -> Result<(VideoNode, PathBuf)> {
    let mut seen = Vec::new();
    let mut found = Vec::new();
    for p in numbered("/sys/class/video4linux", "video") {
        // A quick look first: only mem2mem nodes offering H264_SLICE get the full probe.
        if let Some(why) = not_h264_m2m(&p) {
            seen.push(format!("{} ({why})", p.display()));
            continue;
        }
        let n = match video_node(&p) {
            Ok(n) => n,
            Err(e) => {
                seen.push(format!("{e:#}"));
                continue;
            }
        };
        if n.m2m && n.mplane && n.stateless.iter().any(|c| c.fourcc.starts_with("S264")) {
            match n.media.clone() {
                Some(m) => found.push((n, PathBuf::from(m))),
                None => seen.push(format!("{} (no media device)", n.path)),
            }
        } else {
            seen.push(format!("{} ({})", n.path, n.driver));
        }
    }
    // Stable: keeps node order among equals.
    found.sort_by_key(|(n, _)| !n.driver.starts_with("hantro"));
    if let Some(f) = found.into_iter().next() {
        return Ok(f);
    }
    if seen.is_empty() {
        bail!("no V4L2 video nodes at all (no /dev/video*; is the decoder's driver loaded?)");
    }
    bail!(
        "no stateless H.264 decoder with a media device among: {}",
        seen.join(", ")
    )
}

/// Why `path` is not a multi-planar mem2mem node offering H264_SLICE on OUTPUT (driver name
/// included), or None if it is.
fn not_h264_m2m(path: &Path) -> Option<String> {
    let dev = match crate::v4l2::open(path) {
        Ok(d) => d,
        Err(e) => return Some(format!("{e:#}")),
    };
    let cap: ioctl::Capability = match ioctl::querycap(&dev) {
        Ok(c) => c,
        Err(e) => return Some(format!("VIDIOC_QUERYCAP: {e}")),
    };
    if !cap.device_caps().contains(Capabilities::VIDEO_M2M_MPLANE) {
        return Some(cap.driver);
    }
    if !formats(&dev, QueueType::VideoOutputMplane).contains(&PixelFormat::from_fourcc(b"S264")) {
        return Some(format!("{}, no H264_SLICE", cap.driver));
    }
    None
}

/// The vb2_resv module as /sys and its debugfs show it.
#[derive(Clone, Debug, Serialize)]
pub struct ModuleState {
    pub loaded: bool,
    /// From /sys/kernel/debug/vb2_resv/mode (None if debugfs is not mounted or not readable).
    pub mode: Option<String>,
    /// Nodes the module knows, with "attached"/"detached".
    pub nodes: Vec<(String, String)>,
    pub note: Option<String>,
}

const DEBUGFS: &str = "/sys/kernel/debug/vb2_resv";

/// Whether vb2_resv knows the node `videoN`, from its debugfs file's first line
/// (`node "videoN" driver "visl" attached`).
fn module_node_state(name: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("{DEBUGFS}/{name}")).ok()?;
    let first = s.lines().next()?;
    if first.trim_end().ends_with("detached") {
        Some("detached".into())
    } else if first.trim_end().ends_with("attached") {
        Some("attached".into())
    } else {
        Some(first.to_string())
    }
}

pub fn module_state() -> ModuleState {
    let loaded = Path::new("/sys/module/vb2_resv").exists();
    let mode = std::fs::read_to_string(format!("{DEBUGFS}/mode"))
        .ok()
        .map(|s| s.trim().to_string());
    let mut nodes = Vec::new();
    if let Ok(d) = std::fs::read_dir(DEBUGFS) {
        for e in d.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("video") {
                if let Some(s) = module_node_state(&n) {
                    nodes.push((format!("/dev/{n}"), s));
                }
            }
        }
    }
    nodes.sort();
    let note = if loaded && mode.is_none() {
        Some(format!(
            "{DEBUGFS} not readable (debugfs not mounted, or not root)"
        ))
    } else {
        None
    };
    ModuleState {
        loaded,
        mode,
        nodes,
        note,
    }
}

/// A device-tree node of interest and whether it says `dma-coherent`.
#[derive(Clone, Debug, Serialize)]
pub struct DtNode {
    pub role: &'static str,
    pub path: String,
    pub compatible: Vec<String>,
    pub dma_coherent: bool,
    pub status: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DeviceTree {
    pub present: bool,
    pub note: Option<String>,
    pub nodes: Vec<DtNode>,
}

fn dt_role(compat: &[String]) -> Option<&'static str> {
    for c in compat {
        let c = c.as_str();
        if c.starts_with("arm,mali") || c.contains("-mali") || c.contains("panfrost") {
            return Some("gpu");
        }
        if c.ends_with("-vpu")
            || c.ends_with("-vdec")
            || c.contains("vdpu")
            || c.contains("hantro")
            || c.contains("rkvdec")
            || c.contains("-vpu-")
        {
            return Some("vpu");
        }
    }
    None
}

fn walk_dt(dir: &Path, depth: usize, out: &mut Vec<DtNode>) {
    if depth > 6 {
        return;
    }
    if let Ok(bytes) = std::fs::read(dir.join("compatible")) {
        let compat: Vec<String> = bytes
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        if let Some(role) = dt_role(&compat) {
            out.push(DtNode {
                role,
                path: dir
                    .strip_prefix("/proc/device-tree")
                    .map(|p| format!("/{}", p.display()))
                    .unwrap_or_else(|_| dir.display().to_string()),
                compatible: compat,
                dma_coherent: dir.join("dma-coherent").exists(),
                status: std::fs::read(dir.join("status"))
                    .ok()
                    .map(|s| cstr(&[s.as_slice(), &[0]].concat())),
            });
        }
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut subs: Vec<PathBuf> = rd
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.path())
            .collect();
        subs.sort();
        for s in subs {
            walk_dt(&s, depth + 1, out);
        }
    }
}

pub fn device_tree() -> DeviceTree {
    let root = Path::new("/proc/device-tree");
    if !root.exists() {
        return DeviceTree {
            present: false,
            note: Some(format!(
                "not a device-tree system ({}): no /proc/device-tree",
                std::env::consts::ARCH
            )),
            nodes: vec![],
        };
    }
    let mut nodes = Vec::new();
    walk_dt(root, 0, &mut nodes);
    let note = if nodes.is_empty() {
        Some("no GPU (mali) or VPU (hantro/rkvdec) node in the device tree".into())
    } else {
        None
    };
    DeviceTree {
        present: true,
        note,
        nodes,
    }
}

/// Everything `vb2-resv probe` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Probe {
    pub kernel: String,
    pub arch: &'static str,
    pub media_devices: Vec<MediaDevice>,
    pub video_nodes: Vec<VideoNode>,
    /// The paths of the nodes that are stateless decoders.
    pub stateless_decoders: Vec<String>,
    pub vb2_resv: ModuleState,
    pub device_tree: DeviceTree,
    pub errors: Vec<String>,
}

pub fn probe() -> Probe {
    let (media_devices, mut errors) = media_devices();
    let (video_nodes, verr) = video_nodes();
    errors.extend(verr);
    let stateless_decoders = video_nodes
        .iter()
        .filter(|n| !n.stateless.is_empty())
        .map(|n| n.path.clone())
        .collect();
    Probe {
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        arch: std::env::consts::ARCH,
        media_devices,
        video_nodes,
        stateless_decoders,
        vb2_resv: module_state(),
        device_tree: device_tree(),
        errors,
    }
}

impl Probe {
    /// The human-readable form.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "kernel {} ({})", self.kernel, self.arch);
        let _ = writeln!(s, "\nmedia devices: {}", self.media_devices.len());
        for m in &self.media_devices {
            let _ = writeln!(
                s,
                "  {}: driver {}, model '{}', bus {}, media API {}",
                m.path, m.driver, m.model, m.bus_info, m.media_version
            );
            for e in &m.entities {
                let _ = writeln!(s, "    entity {} '{}' [{}]", e.id, e.name, e.function);
            }
            for i in &m.interfaces {
                let _ = writeln!(
                    s,
                    "    interface {} {} {}:{} {}",
                    i.id,
                    i.intf_type,
                    i.major,
                    i.minor,
                    i.devnode.as_deref().unwrap_or("(no node)")
                );
            }
            for l in &m.links {
                let _ = writeln!(
                    s,
                    "    link {} -> {} ({}{}{})",
                    l.source,
                    l.sink,
                    l.kind,
                    if l.enabled { ", enabled" } else { "" },
                    if l.immutable { ", immutable" } else { "" }
                );
            }
        }
        let _ = writeln!(s, "\nvideo nodes: {}", self.video_nodes.len());
        for n in &self.video_nodes {
            let _ = writeln!(
                s,
                "  {}: {} '{}' ({}{}){}{}",
                n.path,
                n.driver,
                n.card,
                if n.m2m { "m2m" } else { "video" },
                if n.mplane { ", mplane" } else { "" },
                n.media
                    .as_ref()
                    .map(|m| format!(", media {m}"))
                    .unwrap_or_default(),
                n.vb2_resv
                    .as_ref()
                    .map(|v| format!(", vb2_resv {v}"))
                    .unwrap_or_default()
            );
            if n.stateless.is_empty() {
                let _ = writeln!(
                    s,
                    "    not a stateless decoder; OUTPUT [{}] CAPTURE [{}]",
                    n.output_formats.join(", "),
                    n.capture_formats.join(", ")
                );
                continue;
            }
            let _ = writeln!(
                s,
                "    stateless decoder: requests {}, HOLD_CAPTURE_BUF {}",
                if n.requests { "yes" } else { "NO" },
                if n.hold_capture_buf { "yes" } else { "no" }
            );
            for c in &n.stateless {
                let _ = writeln!(
                    s,
                    "    {} ({}) -> CAPTURE [{}]",
                    c.codec,
                    c.fourcc,
                    c.capture_formats.join(", ")
                );
                if let Some(m) = &c.decode_modes {
                    let _ = writeln!(
                        s,
                        "      decode modes: {} (default {})",
                        m.offered.join(", "),
                        m.default
                    );
                }
                if let Some(m) = &c.start_codes {
                    let _ = writeln!(
                        s,
                        "      start codes: {} (default {})",
                        m.offered.join(", "),
                        m.default
                    );
                }
            }
        }
        if self.stateless_decoders.is_empty() {
            let _ = writeln!(s, "  (no stateless decoder)");
        }
        let m = &self.vb2_resv;
        let _ = writeln!(
            s,
            "\nvb2_resv: {}{}",
            if m.loaded { "loaded" } else { "not loaded" },
            m.mode
                .as_ref()
                .map(|x| format!(", mode {x}"))
                .unwrap_or_default()
        );
        for (n, st) in &m.nodes {
            let _ = writeln!(s, "  {n}: {st}");
        }
        if let Some(n) = &m.note {
            let _ = writeln!(s, "  {n}");
        }
        let _ = writeln!(s, "\ndevice tree:");
        if let Some(n) = &self.device_tree.note {
            let _ = writeln!(s, "  {n}");
        }
        for d in &self.device_tree.nodes {
            let _ = writeln!(
                s,
                "  {} {} [{}]: {}{}",
                d.role,
                d.path,
                d.compatible.join(", "),
                if d.dma_coherent {
                    "dma-coherent"
                } else {
                    "NOT dma-coherent"
                },
                d.status
                    .as_ref()
                    .map(|x| format!(", status {x}"))
                    .unwrap_or_default()
            );
        }
        for e in &self.errors {
            let _ = writeln!(s, "error: {e}");
        }
        s
    }
}
