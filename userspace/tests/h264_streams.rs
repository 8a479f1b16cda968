//! vb2r::h264 against what ffmpeg/ffprobe report for the same streams (the expectation files
//! scripts/make-streams.sh writes next to them), and against h264-reader's parsers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use h264_reader::nal::{
    pps::PicParameterSet, slice::SliceHeader, sps::SeqParameterSet, Nal, RefNal,
};
use vb2r::h264::{self, SliceType, Stream};

fn streams_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/streams")
}

/// The 1080p stream is generated into build/streams by `make test` (scripts/make-streams.sh).
fn big_dir() -> PathBuf {
    std::env::var_os("VB2R_STREAMS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/streams"))
}

const SMALL: &[&str] = &[
    "baseline-320x240",
    "high-bpyramid-320x240",
    "main-slices-320x240",
    "high-cqm-320x240",
];

fn kv(line: &str) -> HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn num(m: &HashMap<String, String>, k: &str) -> i64 {
    m.get(k)
        .unwrap_or_else(|| panic!("expectation field {k} missing"))
        .parse()
        .unwrap_or_else(|_| panic!("expectation field {k} not a number"))
}

fn lines(dir: &Path, name: &str, kind: &str) -> Vec<String> {
    let p = dir.join(format!("{name}.{kind}.txt"));
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/make-streams.sh)", p.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn load(dir: &Path, name: &str) -> (Vec<u8>, Stream) {
    let data = std::fs::read(dir.join(format!("{name}.h264"))).unwrap();
    let s = h264::parse(&data).unwrap_or_else(|e| panic!("{name}: {e}"));
    (data, s)
}

/// Slice headers and bit sizes against ffmpeg's trace_headers.
fn check_slices(dir: &Path, name: &str) -> usize {
    let (_, s) = load(dir, name);
    let exp = lines(dir, name, "slices");
    let ours: Vec<_> = s.pictures.iter().flat_map(|p| p.slices.iter()).collect();
    assert_eq!(ours.len(), exp.len(), "{name}: slice count");
    for (i, (sl, line)) in ours.iter().zip(&exp).enumerate() {
        let e = kv(line);
        let ctx = format!("{name} slice {i}: {line}");
        assert_eq!(
            i64::from(sl.nal_unit_type),
            num(&e, "nut"),
            "{ctx}: nal_unit_type"
        );
        assert_eq!(
            i64::from(sl.nal_ref_idc),
            num(&e, "ref"),
            "{ctx}: nal_ref_idc"
        );
        assert_eq!(
            i64::from(sl.first_mb_in_slice),
            num(&e, "mb"),
            "{ctx}: first_mb"
        );
        assert_eq!(
            i64::from(sl.slice_type.v4l2()),
            num(&e, "type") % 5,
            "{ctx}: slice_type"
        );
        assert_eq!(i64::from(sl.pps_id), num(&e, "pps"), "{ctx}: pps id");
        let h = sl.header();
        assert_eq!(i64::from(h.frame_num), num(&e, "fn"), "{ctx}: frame_num");
        assert_eq!(i64::from(h.idr_pic_id), num(&e, "idr"), "{ctx}: idr_pic_id");
        assert_eq!(
            i64::from(h.pic_order_cnt_lsb),
            num(&e, "lsb"),
            "{ctx}: poc lsb"
        );
        assert_eq!(
            i64::from(h.delta_pic_order_cnt_bottom),
            num(&e, "dbot"),
            "{ctx}"
        );
        assert_eq!(i64::from(h.delta_pic_order_cnt[0]), num(&e, "d0"), "{ctx}");
        assert_eq!(i64::from(h.delta_pic_order_cnt[1]), num(&e, "d1"), "{ctx}");
        if num(&e, "ovr") == 1 {
            assert_eq!(
                i64::from(sl.num_ref_idx_l0_active_minus1),
                num(&e, "l0"),
                "{ctx}: l0"
            );
            if sl.slice_type == SliceType::B {
                assert_eq!(
                    i64::from(sl.num_ref_idx_l1_active_minus1),
                    num(&e, "l1"),
                    "{ctx}"
                );
            }
        }
        assert_eq!(
            i64::from(sl.header_bit_size),
            num(&e, "hdr"),
            "{ctx}: header_bit_size"
        );
        assert_eq!(
            i64::from(sl.pic_order_cnt_bit_size),
            num(&e, "pocbits"),
            "{ctx}: poc bits"
        );
        assert_eq!(
            i64::from(sl.dec_ref_pic_marking_bit_size),
            num(&e, "drpmbits"),
            "{ctx}: dec_ref_pic_marking bits"
        );
        let mmco: Vec<String> = sl
            .mmco
            .iter()
            .map(|m| {
                let args = match m.op {
                    1 => vec![m.difference_of_pic_nums_minus1],
                    2 => vec![m.long_term_pic_num],
                    3 => vec![m.difference_of_pic_nums_minus1, m.long_term_frame_idx],
                    4 => vec![m.max_long_term_frame_idx_plus1],
                    6 => vec![m.long_term_frame_idx],
                    _ => vec![],
                };
                std::iter::once(m.op.to_string())
                    .chain(args.iter().map(u32::to_string))
                    .collect::<Vec<_>>()
                    .join(":")
            })
            .collect();
        let mmco = if mmco.is_empty() {
            "-".to_string()
        } else {
            mmco.join(",")
        };
        assert_eq!(&mmco, &e["mmco"], "{ctx}: MMCO");
    }
    ours.len()
}

/// Reference state, frame_num and POC against ffmpeg's decoder (-debug pict+mmco).
fn check_frames(dir: &Path, name: &str) {
    let (_, s) = load(dir, name);
    let exp = lines(dir, name, "frames");
    let per_slice: Vec<(usize, usize)> = s
        .pictures
        .iter()
        .flat_map(|p| (0..p.slices.len()).map(move |k| (p.decode_index, k)))
        .collect();
    assert_eq!(
        per_slice.len(),
        exp.len(),
        "{name}: slices decoded by ffmpeg"
    );
    // ffmpeg offsets its POCs by a constant (65536 in 5.1); learn it from the first picture.
    let offset = num(&kv(&exp[0]), "top") - i64::from(s.pictures[0].top_poc);
    let mut checked_lists = 0;
    for (&(pi, si), line) in per_slice.iter().zip(&exp) {
        let e = kv(line);
        let p = &s.pictures[pi];
        let sl = &p.slices[si];
        let ctx = format!("{name} picture {pi} slice {si}: {line}");
        assert_eq!(i64::from(sl.first_mb_in_slice), num(&e, "mb"), "{ctx}");
        assert_eq!(sl.slice_type.letter().to_string(), e["type"], "{ctx}: type");
        assert_eq!(i64::from(p.idr), num(&e, "idr"), "{ctx}: idr");
        assert_eq!(i64::from(p.frame_num), num(&e, "fn"), "{ctx}: frame_num");
        assert_eq!(
            i64::from(p.top_poc) + offset,
            num(&e, "top"),
            "{ctx}: TopFieldOrderCnt"
        );
        assert_eq!(
            i64::from(p.bottom_poc) + offset,
            num(&e, "bot"),
            "{ctx}: BottomFieldOrderCnt"
        );
        if sl.slice_type != SliceType::I {
            assert_eq!(
                sl.ref_list0.len() as i64,
                num(&e, "nref0"),
                "{ctx}: RefPicList0 length"
            );
            checked_lists += 1;
        }
        if sl.slice_type == SliceType::B {
            assert_eq!(
                sl.ref_list1.len() as i64,
                num(&e, "nref1"),
                "{ctx}: RefPicList1 length"
            );
        }
        // ffmpeg's short-term list is most recent first, as our dpb[]; its entries "fn:F:POC".
        let st: Vec<String> = p
            .dpb
            .iter()
            .filter(|d| !d.long_term)
            .map(|d| format!("fn:{}:{}", d.frame_num, i64::from(d.top_poc) + offset))
            .collect();
        let st = if st.is_empty() {
            "-".to_string()
        } else {
            st.join(",")
        };
        assert_eq!(st, e["st"], "{ctx}: short-term references (dpb[])");
        let lt: Vec<String> = p
            .dpb
            .iter()
            .filter(|d| d.long_term)
            .map(|d| {
                format!(
                    "{}=fn:{}:{}",
                    d.frame_num,
                    s.pictures[d.decode_index].frame_num,
                    i64::from(d.top_poc) + offset
                )
            })
            .collect();
        let lt = if lt.is_empty() {
            "-".to_string()
        } else {
            lt.join(",")
        };
        assert_eq!(lt, e["lt"], "{ctx}: long-term references (dpb[])");
        // Every list entry is a dpb[] index.
        for &r in sl.ref_list0.iter().chain(&sl.ref_list1) {
            assert!(r < p.dpb.len(), "{ctx}: ref list index {r} outside dpb[]");
        }
    }
    let _ = checked_lists; // lengths here; the order in ref_lists_match_ffmpeg_in_order
}

/// Display order and picture types against ffprobe -show_frames.
fn check_order(dir: &Path, name: &str) {
    let (_, s) = load(dir, name);
    let exp = lines(dir, name, "order");
    assert_eq!(s.pictures.len(), exp.len(), "{name}: frame count (ffprobe)");
    for (k, line) in exp.iter().enumerate() {
        let mut w = line.split_whitespace();
        let coded: usize = w.next().unwrap().parse().unwrap();
        let t = w.next().unwrap();
        assert_eq!(s.output_order[k], coded, "{name}: display position {k}");
        let p = &s.pictures[coded];
        assert_eq!(
            p.display_index, k,
            "{name}: display_index of picture {coded}"
        );
        assert_eq!(
            p.slice_types[0].letter().to_string(),
            t,
            "{name}: pict_type of picture {coded}"
        );
    }
}

/// Lifetimes: every reference is alive when used, and max_live covers them.
fn check_lifetimes(s: &Stream) {
    for p in &s.pictures {
        for d in &p.dpb {
            assert!(d.decode_index < p.decode_index);
            assert!(s.pictures[d.decode_index].last_use >= p.decode_index);
        }
        assert!(p.output_after >= p.decode_index);
    }
    assert!(s.max_live >= s.max_num_ref_frames as usize);
    assert!(s.max_live <= 17, "max_live {}", s.max_live);
}

/// SPS/PPS/slice header fields against h264-reader.
fn cross_check_h264_reader(dir: &Path, name: &str) {
    let (data, s) = load(dir, name);
    let mut ctx = h264_reader::Context::new();
    let (nals, _) = h264::nal_units(&data);
    let ours: Vec<_> = s.pictures.iter().flat_map(|p| p.slices.iter()).collect();
    let mut k = 0;
    for n in nals {
        let nal = RefNal::new(n.data, &[], true);
        let hdr = nal.header().unwrap();
        match n.nal_unit_type() {
            7 => {
                let sps = SeqParameterSet::from_bits(nal.rbsp_bits()).unwrap();
                let v = &s.sps.iter().find(|x| x.id == sps.id().id()).unwrap().v4l2;
                assert_eq!(v.profile_idc, u8::from(sps.profile_idc));
                assert_eq!(v.level_idc, sps.level_idc);
                assert_eq!(u32::from(v.max_num_ref_frames), sps.max_num_ref_frames);
                assert_eq!(
                    u32::from(v.log2_max_frame_num_minus4) + 4,
                    u32::from(sps.log2_max_frame_num())
                );
                let (w, h) = sps.pixel_dimensions().unwrap();
                assert_eq!(
                    (w, h),
                    (s.visible_width, s.visible_height),
                    "{name}: cropped size"
                );
                assert_eq!(
                    u32::from(v.pic_width_in_mbs_minus1) + 1,
                    sps.pic_width_in_mbs_minus1 + 1
                );
                ctx.put_seq_param_set(sps);
            }
            8 => {
                let pps = PicParameterSet::from_bits(&ctx, nal.rbsp_bits()).unwrap();
                let v = &s
                    .pps
                    .iter()
                    .find(|x| x.id == pps.pic_parameter_set_id.id())
                    .unwrap()
                    .v4l2;
                assert_eq!(
                    u32::from(v.num_ref_idx_l0_default_active_minus1),
                    pps.num_ref_idx_l0_default_active_minus1
                );
                assert_eq!(
                    u32::from(v.num_ref_idx_l1_default_active_minus1),
                    pps.num_ref_idx_l1_default_active_minus1
                );
                assert_eq!(v.weighted_bipred_idc, pps.weighted_bipred_idc);
                assert_eq!(i32::from(v.pic_init_qp_minus26), pps.pic_init_qp_minus26);
                assert_eq!(
                    i32::from(v.chroma_qp_index_offset),
                    pps.chroma_qp_index_offset
                );
                let f = u32::from(v.flags);
                use v4l2r::bindings as b;
                assert_eq!(
                    f & b::V4L2_H264_PPS_FLAG_ENTROPY_CODING_MODE != 0,
                    pps.entropy_coding_mode_flag
                );
                assert_eq!(
                    f & b::V4L2_H264_PPS_FLAG_WEIGHTED_PRED != 0,
                    pps.weighted_pred_flag
                );
                assert_eq!(
                    f & b::V4L2_H264_PPS_FLAG_TRANSFORM_8X8_MODE != 0,
                    pps.extension
                        .as_ref()
                        .is_some_and(|x| x.transform_8x8_mode_flag)
                );
                ctx.put_pic_param_set(pps);
            }
            1 | 5 => {
                let (sh, _, _) =
                    SliceHeader::from_bits(&ctx, &mut nal.rbsp_bits(), hdr, None).unwrap();
                let o = ours[k];
                k += 1;
                assert_eq!(o.first_mb_in_slice, sh.first_mb_in_slice);
                assert_eq!(o.header().frame_num, sh.frame_num);
                assert_eq!(o.header().slice_qp_delta as i32, sh.slice_qp_delta);
                assert_eq!(
                    o.header().disable_deblocking_filter_idc,
                    sh.disable_deblocking_filter_idc
                );
                if let Some(h264_reader::nal::slice::PicOrderCountLsb::Frame(l)) =
                    sh.pic_order_cnt_lsb
                {
                    assert_eq!(u32::from(o.header().pic_order_cnt_lsb), l);
                }
                if let Some(id) = sh.idr_pic_id {
                    assert_eq!(u32::from(o.header().idr_pic_id), id);
                }
                use h264_reader::nal::slice::DecRefPicMarking as D;
                match &sh.dec_ref_pic_marking {
                    Some(D::Adaptive(ops)) => {
                        assert_eq!(ops.len(), o.mmco.len(), "{name}: MMCO count")
                    }
                    _ => assert!(o.mmco.is_empty()),
                }
            }
            _ => {}
        }
    }
    assert_eq!(k, ours.len());
}

#[test]
fn small_streams_match_ffmpeg() {
    let dir = streams_dir();
    let mut total = 0;
    for name in SMALL {
        total += check_slices(&dir, name);
        check_frames(&dir, name);
        check_order(&dir, name);
        check_lifetimes(&load(&dir, name).1);
    }
    assert!(total > 200);
}

#[test]
fn small_streams_match_h264_reader() {
    for name in SMALL {
        cross_check_h264_reader(&streams_dir(), name);
    }
}

#[test]
fn stream_properties() {
    let dir = streams_dir();
    let (_, b) = load(&dir, "baseline-320x240");
    assert_eq!(
        (
            b.coded_width,
            b.coded_height,
            b.visible_width,
            b.visible_height
        ),
        (320, 240, 320, 240)
    );
    assert_eq!(b.profile_idc, 66);
    assert_eq!(b.sps[0].v4l2.pic_order_cnt_type, 2);
    assert!(b
        .pictures
        .iter()
        .all(|p| !p.slice_types.contains(&SliceType::B)));
    let (_, h) = load(&dir, "high-bpyramid-320x240");
    assert_eq!(h.profile_idc, 100);
    assert_eq!(h.sps[0].v4l2.pic_order_cnt_type, 0);
    assert!(
        h.pictures
            .iter()
            .any(|p| p.slices.iter().any(|s| !s.mmco.is_empty())),
        "x264 pyramid MMCOs"
    );
    assert!(
        h.pictures
            .iter()
            .any(|p| p.slice_types[0] == SliceType::B && p.nal_ref_idc != 0),
        "reference B"
    );
    let (_, m) = load(&dir, "main-slices-320x240");
    assert!(m.pictures.iter().all(|p| p.slices.len() == 4));
    let (_, c) = load(&dir, "high-cqm-320x240");
    let v = c.pictures[0].v4l2_controls(&c, |i| i as u64 * 1000);
    assert!(
        u32::from(v.pps.flags) & v4l2r::bindings::V4L2_H264_PPS_FLAG_SCALING_MATRIX_PRESENT != 0
    );
}

#[test]
fn big_stream_matches_ffmpeg() {
    let dir = big_dir();
    let name = "high-1920x1080";
    // Generated, not committed (about 1 MB): `make test` runs the script before the cargo tests.
    // A missing stream is a failure, never a silent pass.
    assert!(
        dir.join(format!("{name}.h264")).exists(),
        "{} has no {name}.h264: run scripts/make-streams.sh --big {}",
        dir.display(),
        dir.display()
    );
    check_slices(&dir, name);
    check_frames(&dir, name);
    check_order(&dir, name);
    let (_, s) = load(&dir, name);
    check_lifetimes(&s);
    assert_eq!(
        (
            s.coded_width,
            s.coded_height,
            s.visible_width,
            s.visible_height
        ),
        (1920, 1088, 1920, 1080)
    );
}

/// A reference as ffmpeg names it: (frame_num, POC with ffmpeg's offset), long-term or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FfRef {
    frame_num: i64,
    poc: i64,
    long_term: Option<i64>,
}

/// "fn:F:POC,..." (short-term, most recent first) or "IDX=fn:F:POC,..." (long-term).
fn ff_refs(list: &str, long_term: bool) -> Vec<FfRef> {
    if list == "-" {
        return vec![];
    }
    list.split(',')
        .map(|e| {
            let (idx, rest) = match e.split_once('=') {
                Some((i, r)) => (Some(i.parse::<i64>().unwrap()), r),
                None => (None, e),
            };
            let mut it = rest.split(':');
            assert_eq!(it.next(), Some("fn"), "{e}");
            let frame_num = it.next().unwrap().parse().unwrap();
            let poc = it.next().unwrap().parse().unwrap();
            FfRef {
                frame_num,
                poc,
                long_term: if long_term { idx } else { None },
            }
        })
        .collect()
}

/// RefPicList0/1 of one slice rebuilt from ffmpeg's reference state (frames.txt) and
/// h264-reader's ref_pic_list_modification, by the rules of 8.2.4.2 and 8.2.4.3 (frames only):
/// an implementation independent of vb2r::h264::refs, to compare our lists with, in order.
#[allow(clippy::too_many_arguments)]
fn expected_lists(
    st: &[FfRef],
    lt: &[FfRef],
    cur_fn: i64,
    cur_poc: i64,
    max_frame_num: i64,
    b: bool,
    n: [usize; 2],
    mods: [&[h264_reader::nal::slice::ModificationOfPicNums]; 2],
) -> [Vec<Option<FfRef>>; 2] {
    let pic_num = |r: &FfRef| {
        if r.frame_num > cur_fn {
            r.frame_num - max_frame_num
        } else {
            r.frame_num
        }
    };
    let mut lts: Vec<FfRef> = lt.to_vec();
    lts.sort_by_key(|r| r.long_term.unwrap());
    let mut init: [Vec<FfRef>; 2] = if !b {
        let mut s: Vec<FfRef> = st.to_vec();
        s.sort_by_key(|r| std::cmp::Reverse(pic_num(r)));
        s.extend(&lts);
        [s, vec![]]
    } else {
        let mut before: Vec<FfRef> = st.iter().copied().filter(|r| r.poc < cur_poc).collect();
        before.sort_by_key(|r| std::cmp::Reverse(r.poc));
        let mut after: Vec<FfRef> = st.iter().copied().filter(|r| r.poc > cur_poc).collect();
        after.sort_by_key(|r| r.poc);
        let mut l0 = before.clone();
        l0.extend(&after);
        l0.extend(&lts);
        let mut l1 = after;
        l1.extend(&before);
        l1.extend(&lts);
        if l1.len() > 1 && l1 == l0 {
            l1.swap(0, 1);
        }
        [l0, l1]
    };
    let mut out: [Vec<Option<FfRef>>; 2] = [vec![], vec![]];
    for x in 0..if b { 2 } else { 1 } {
        init[x].truncate(n[x]);
        let mut l: Vec<Option<FfRef>> = init[x].iter().copied().map(Some).collect();
        l.resize(n[x], None);
        let mut pred = cur_fn;
        for (ref_idx, m) in mods[x].iter().enumerate() {
            use h264_reader::nal::slice::ModificationOfPicNums as M;
            let pick = match m {
                M::Subtract(a) | M::Add(a) => {
                    let d = i64::from(*a) + 1;
                    let mut no_wrap = if matches!(m, M::Subtract(_)) {
                        pred - d
                    } else {
                        pred + d
                    };
                    if no_wrap < 0 {
                        no_wrap += max_frame_num;
                    } else if no_wrap >= max_frame_num {
                        no_wrap -= max_frame_num;
                    }
                    pred = no_wrap;
                    let pn = if no_wrap > cur_fn {
                        no_wrap - max_frame_num
                    } else {
                        no_wrap
                    };
                    *st.iter()
                        .find(|r| pic_num(r) == pn)
                        .unwrap_or_else(|| panic!("modification names PicNum {pn}: not in {st:?}"))
                }
                M::LongTermRef(n) => *lt
                    .iter()
                    .find(|r| r.long_term == Some(i64::from(*n)))
                    .unwrap_or_else(|| panic!("modification names LongTermPicNum {n}")),
                other => panic!("MVC modification {other:?}"),
            };
            l.insert(ref_idx, Some(pick));
            // The same picture later in the list goes (8.2.4.3.1/2).
            if let Some(k) = (ref_idx + 1..l.len()).find(|&k| l[k] == Some(pick)) {
                l.remove(k);
            }
            l.truncate(n[x]);
        }
        out[x] = l;
    }
    out
}

/// Our RefPicList0/1 against the ones rebuilt from ffmpeg's reference state, entry by entry.
fn check_ref_list_order(dir: &Path, name: &str) -> usize {
    let (data, s) = load(dir, name);
    let exp = lines(dir, name, "frames");
    let offset = num(&kv(&exp[0]), "top") - i64::from(s.pictures[0].top_poc);
    let mut ctx = h264_reader::Context::new();
    let mut headers = Vec::new();
    for n in h264::nal_units(&data).0 {
        let nal = RefNal::new(n.data, &[], true);
        let hdr = nal.header().unwrap();
        match n.nal_unit_type() {
            7 => ctx.put_seq_param_set(SeqParameterSet::from_bits(nal.rbsp_bits()).unwrap()),
            8 => {
                let pps = PicParameterSet::from_bits(&ctx, nal.rbsp_bits()).unwrap();
                ctx.put_pic_param_set(pps)
            }
            1 | 5 => {
                let (sh, sps, _) =
                    SliceHeader::from_bits(&ctx, &mut nal.rbsp_bits(), hdr, None).unwrap();
                headers.push((sh, i64::from(sps.log2_max_frame_num())));
            }
            _ => {}
        }
    }
    let slices: Vec<(usize, usize)> = s
        .pictures
        .iter()
        .flat_map(|p| (0..p.slices.len()).map(move |k| (p.decode_index, k)))
        .collect();
    assert_eq!(slices.len(), headers.len());
    assert_eq!(slices.len(), exp.len());
    let mut compared = 0;
    for ((&(pi, si), line), (sh, log2_max_fn)) in slices.iter().zip(&exp).zip(&headers) {
        let e = kv(line);
        let p = &s.pictures[pi];
        let sl = &p.slices[si];
        if sl.slice_type == SliceType::I {
            continue;
        }
        let b = sl.slice_type == SliceType::B;
        use h264_reader::nal::slice::RefPicListModifications as R;
        let none: &[h264_reader::nal::slice::ModificationOfPicNums] = &[];
        let mods = match &sh.ref_pic_list_modification {
            Some(R::P {
                ref_pic_list_modification_l0,
            }) => [&ref_pic_list_modification_l0[..], none],
            Some(R::B {
                ref_pic_list_modification_l0,
                ref_pic_list_modification_l1,
            }) => [
                &ref_pic_list_modification_l0[..],
                &ref_pic_list_modification_l1[..],
            ],
            _ => [none, none],
        };
        let want = expected_lists(
            &ff_refs(&e["st"], false),
            &ff_refs(&e["lt"], true),
            num(&e, "fn"),
            num(&e, "top").min(num(&e, "bot")),
            1 << log2_max_fn,
            b,
            [num(&e, "nref0") as usize, num(&e, "nref1") as usize],
            mods,
        );
        let ours = |l: &[usize]| -> Vec<Option<FfRef>> {
            l.iter()
                .map(|&k| {
                    let d = &p.dpb[k];
                    Some(FfRef {
                        frame_num: i64::from(s.pictures[d.decode_index].frame_num),
                        poc: i64::from(d.top_poc.min(d.bottom_poc)) + offset,
                        long_term: d.long_term.then_some(i64::from(d.frame_num)),
                    })
                })
                .collect()
        };
        let ctx = format!("{name} picture {pi} slice {si}: {line}");
        let trim = |v: &[Option<FfRef>]| -> Vec<Option<FfRef>> {
            let n = v.iter().rposition(Option::is_some).map_or(0, |i| i + 1);
            v[..n].to_vec()
        };
        assert_eq!(
            ours(&sl.ref_list0),
            trim(&want[0]),
            "{ctx}: RefPicList0, in order"
        );
        if b {
            assert_eq!(
                ours(&sl.ref_list1),
                trim(&want[1]),
                "{ctx}: RefPicList1, in order"
            );
        }
        compared += 1;
    }
    compared
}

#[test]
fn ref_lists_match_ffmpeg_in_order() {
    let mut n = 0;
    for name in SMALL {
        n += check_ref_list_order(&streams_dir(), name);
    }
    assert!(n > 100, "{n} P/B slices compared");
}
