# The verifier's decoder half on visl: `vb2-resv decode` (userspace/src/decode/) drives visl's
# stateless H.264 interface the way ffmpeg's v4l2-request hwaccel drives hantro.
# shellcheck shell=bash

VB2R=${VB2R_BIN:-$VB2R_REPO/target/release/vb2-resv}
TEST_TIMEOUT[verifier.visl.decode]=600
TEST_TIMEOUT[verifier.visl.controls]=600
TEST_TIMEOUT[verifier.visl.fences]=300
TEST_TIMEOUT[verifier.bad-input]=120
TEST_TIMEOUT[verifier.mode-restored]=300

# The test streams (scripts/make-streams.sh): small ones kept in the repo, 1080p ones generated
# into build/streams. VB2R_STREAMS (directories) overrides. Streams named bad-* are the
# bad-input cases, not decode cases.
verifier_streams() {
	local d f dirs=${VB2R_STREAMS:-"$VB2R_REPO/userspace/tests/streams $VB2R_REPO/build/streams"}
	for d in $dirs; do
		for f in "$d"/*.h264; do
			[ -f "$f" ] || continue
			case "$(basename "$f")" in bad-*) continue ;; esac
			echo "$f"
		done
	done
}

verifier_need_streams() {
	[ -x "$VB2R" ] || fail "$VB2R not built"
	[ -n "$(verifier_streams)" ] || fail "no test streams (run scripts/make-streams.sh)"
}

# The visl node (by driver, not by number).
visl_node() {
	local n
	for n in /sys/class/video4linux/video*; do
		if [ "$(basename "$(readlink -f "$n/device/driver")")" = visl ]; then
			echo "/dev/$(basename "$n")"
			return 0
		fi
	done
	return 1
}

# Loads visl and prints its node.
visl_node_loaded() {
	load_drivers visl || return 1
	visl_node
}

t_verifier_visl_decode() {
	verifier_need_streams
	load_drivers visl || fail "modprobe visl"
	local dev f n=0 bad=0
	dev=$(visl_node) || fail "no visl video node"
	for f in $(verifier_streams); do
		local b j
		b=$(basename "$f" .h264)
		j=/tmp/dec-$b.json
		# ffmpeg's own decoder gives the expected output order, as decode indices
		# (coded_picture_number of each frame ffprobe outputs): NAME.order.txt from
		# scripts/make-streams.sh, or ffprobe here.
		if [ -s "${f%.h264}.order.txt" ]; then
			cut -d' ' -f1 "${f%.h264}.order.txt" >/tmp/exp-$b.txt
		else
			ffprobe -v error -threads 1 -show_frames -show_entries frame=coded_picture_number \
				-of csv=p=0 "$f" | cut -d, -f1 | grep -E '^[0-9]+$' >/tmp/exp-$b.txt ||
				fail "$f: ffprobe failed"
		fi
		for mode in frame slice; do
			if ! "$VB2R" decode "$f" --device "$dev" --decode-mode $mode --json "$j" -q; then
				echo "FAIL: $f ($mode-based): decode failed"
				bad=$((bad + 1))
				continue
			fi
			python3 - "$j" /tmp/exp-$b.txt "$f ($mode-based)" <<'EOF' || bad=$((bad + 1))
import json, sys
r = json.load(open(sys.argv[1]))
exp = [int(x) for x in open(sys.argv[2]).read().split()]
what = sys.argv[3]
errs = []
s = r["summary"]
if s["frames"] != len(exp):
    errs.append(f"{s['frames']} frames decoded, ffprobe outputs {len(exp)}")
if s["errors"]:
    errs.append(f"{s['errors']} ERROR buffers")
if r["display_order"] != exp:
    errs.append(f"output order {r['display_order'][:12]}..., ffprobe's {exp[:12]}...")
if not s["display_order_ok"]:
    errs.append("summary says display order wrong")
if [f["decode_index"] for f in r["frames"]] != list(range(len(r["frames"]))):
    errs.append("frames are not in decode order")
print(f"{what}: {s['frames']} frames, {s['errors']} errors, {s['fps']:.1f} fps, "
      f"q->dq mean {s['qbuf_to_dqbuf_us']['mean']} us, capture {r['format']['capture']}")
for e in errs:
    print(f"FAIL: {what}: {e}")
sys.exit(1 if errs else 0)
EOF
			n=$((n + 1))
		done
	done
	[ $bad = 0 ] || fail "$bad of $n decodes wrong"
	echo "$n decodes ok"
}

t_verifier_visl_controls() {
	verifier_need_streams
	load_drivers visl || fail "modprobe visl"
	local dev f T=/sys/kernel/tracing bad=0 n=0
	dev=$(visl_node) || fail "no visl video node"
	[ -d $T/events/visl_h264_controls ] || fail "no visl_h264_controls trace events (CONFIG_VISL_DEBUGFS/tracing)"
	echo 32768 >$T/buffer_size_kb
	for ev in v4l2_ctrl_h264_decode_params v4l2_h264_dpb_entry v4l2_ctrl_h264_slice_params \
		v4l2_h264_ref_pic_list0 v4l2_h264_ref_pic_list1; do
		echo 1 >$T/events/visl_h264_controls/$ev/enable || fail "cannot enable $ev"
	done
	for f in $(verifier_streams); do
		# Slice-based: SLICE_PARAMS (with the reference lists) go with every request.
		# Frame-based: what hantro gets (no SLICE_PARAMS; frame_num, POC, dpb[]).
		for mode in slice frame; do
			local j
			j=/tmp/ctl-$(basename "$f" .h264)-$mode.json
			echo >$T/trace
			echo 1 >$T/tracing_on
			"$VB2R" decode "$f" --device "$dev" --decode-mode $mode --json "$j" -q >/dev/null ||
				fail "$f: decode failed"
			echo 0 >$T/tracing_on
			cp $T/trace /tmp/trace.txt
			grep -q 'entries-in-buffer/entries-written: \([0-9]*\)/\1 ' /tmp/trace.txt ||
				fail "trace buffer overflowed: $(grep entries-in-buffer /tmp/trace.txt)"
			python3 - "$j" /tmp/trace.txt "$f ($mode-based)" $mode "${f%.h264}.slices.txt" <<'EOF' || bad=$((bad + 1))
import json, re, sys
r = json.load(open(sys.argv[1]))
what, mode = sys.argv[3], sys.argv[4]
head = re.compile(r"^\s*.+?\s+\[\d+\]\s+\S+\s+[\d.]+:\s+(\w+):\s?(.*)$")
events = []
for line in open(sys.argv[2]):
    if line.startswith("#"):
        continue
    m = head.match(line)
    if m:
        events.append([m.group(1), m.group(2).strip()])
    elif events and line.strip():
        events[-1][1] += "\n" + line.strip()
# One job per request: slice_params, ref lists, decode_params, dpb entries, in that order.
jobs, cur = [], None
for name, text in events:
    if name == "v4l2_ctrl_h264_slice_params":
        cur = {"sp": text, "l0": {}, "l1": {}, "dp": None, "dpb": {}}
        jobs.append(cur)
    elif cur is None:
        continue
    elif name in ("v4l2_h264_ref_pic_list0", "v4l2_h264_ref_pic_list1"):
        m = re.match(r"\[(\d+)\]: fields ?(\S*) index (\d+)", text)
        if m is None:
            raise SystemExit(f"cannot parse {name}: {text!r}")
        cur["l0" if name.endswith("0") else "l1"][int(m.group(1))] = int(m.group(3))
    elif name == "v4l2_ctrl_h264_decode_params":
        cur["dp"] = dict(re.findall(r"^(\w+) (\S+)$", text, re.M))
    elif name == "v4l2_h264_dpb_entry":
        def num(key):
            m = re.search(key + r" (-?\d+)", text)
            return int(m.group(1)) if m else None
        m = re.search(r"flags ?(\S*)$", text)
        i = int(re.match(r"\[(\d+)\]", text).group(1))
        cur["dpb"][i] = (num("reference_ts"), num("pic_num"), num("frame_num"), None,
                         num("top_field_order_cnt"), num("bottom_field_order_cnt"), None,
                         m.group(1) if m else "")
expect_jobs = sum(len(f["ref_lists"]) if mode == "slice" else 1 for f in r["frames"])
errs = []
if len(jobs) != expect_jobs:
    errs.append(f"visl ran {len(jobs)} jobs, {expect_jobs} requests were queued")
k = 0
checked = 0
ts_of = {f["decode_index"]: f["timestamp_ns"] for f in r["frames"]}
for f in r["frames"]:
    per = f["ref_lists"] if mode == "slice" else [None]
    for s in per:
        if k >= len(jobs):
            break
        j = jobs[k]
        k += 1
        tag = f"picture {f['decode_index']}" + (f" slice @MB {s['first_mb_in_slice']}" if s else "")
        dp = j["dp"] or {}
        got = (int(dp.get("frame_num", -1)), int(dp.get("top_field_order_cnt", -999)),
               int(dp.get("bottom_field_order_cnt", -999)), "IDR_PIC" in dp.get("flags", ""))
        want = (f["frame_num"], f["top_poc"], f["bottom_poc"], f["idr"])
        if got != want:
            errs.append(f"{tag}: visl got frame_num/top/bottom POC/IDR {got}, stream says {want}")
        valid = {i: e for i, e in j["dpb"].items() if "VALID" in e[7]}
        dpb = {d["index"]: d for d in f["dpb"]}
        if sorted(valid) != sorted(dpb):
            errs.append(f"{tag}: visl got dpb[] entries {sorted(valid)}, sent {sorted(dpb)}")
        for i, d in dpb.items():
            e = valid.get(i)
            if e is None:
                continue
            # reference_ts names the CAPTURE buffer that holds the picture: its DQBUF timestamp.
            held = ts_of.get(d["decode_index"])
            if held is not None and e[0] != held:
                errs.append(f"{tag}: dpb[{i}] reference_ts {e[0]}, but picture {d['decode_index']} came back with timestamp {held}")
            g = (e[0], e[2], e[4], e[5], "LONG_TERM" in e[7])
            w = (d["reference_ts"], d["frame_num"], d["top_poc"], d["bottom_poc"], d["long_term"])
            if g != w:
                errs.append(f"{tag}: dpb[{i}] visl got ts/frame_num/POCs/LT {g}, stream says {w}")
        if s is not None:
            for name, lst in (("l0", s["list0"]), ("l1", s["list1"])):
                for pos, ref in enumerate(lst):
                    idx = j[name].get(pos)
                    if idx != ref["dpb_index"]:
                        errs.append(f"{tag}: RefPicList{name[1]}[{pos}] visl got dpb index {idx}, stream says {ref['dpb_index']}")
                        continue
                    e = j["dpb"].get(idx)
                    # The entry it points at is the picture the stream says (by POC).
                    if e is None or min(e[4], e[5]) != ref["poc"]:
                        errs.append(f"{tag}: RefPicList{name[1]}[{pos}] -> dpb[{idx}] {e}, stream says POC {ref['poc']}")
            m = re.search(r"first_mb_in_slice (\d+)", j["sp"])
            if not m or int(m.group(1)) != s["first_mb_in_slice"]:
                errs.append(f"{tag}: visl got slice params {j['sp'][:60]!r}")
        checked += 1
# ffmpeg's own reading of the slice headers (scripts/make-streams.sh: -bsf:v trace_headers), one
# line per slice in decode order: what the kernel got must match it, bit sizes included (visl
# accepts wrong ones, hantro does not).
import os
ff = []
if os.path.exists(sys.argv[5]):
    ff = [dict(kv.split("=", 1) for kv in l.split()) for l in open(sys.argv[5]) if l.strip()]
if ff:
    pics, cur_pic = [], []
    for sl in ff:
        if cur_pic and int(sl["mb"]) == 0:
            pics.append(cur_pic)
            cur_pic = []
        cur_pic.append(sl)
    if cur_pic:
        pics.append(cur_pic)
    per_job = [sl for p in pics for sl in (p if mode == "slice" else p[:1])][:len(jobs)]
    if len(per_job) != len(jobs):
        errs.append(f"{len(jobs)} jobs, ffmpeg's slices give {len(per_job)}")
    for k, (sl, j) in enumerate(zip(per_job, jobs)):
        dp = j["dp"] or {}
        got = {"fn": dp.get("frame_num"), "lsb": dp.get("pic_order_cnt_lsb"),
               "pocbits": dp.get("pic_order_cnt_bit_size"),
               "drpmbits": dp.get("dec_ref_pic_marking_bit_size"), "ref": dp.get("nal_ref_idc")}
        if sl["nut"] == "5":
            got["idr"] = dp.get("idr_pic_id")
        if mode == "slice":
            m = re.search(r"header_bit_size (\d+)", j["sp"])
            got["hdr"] = m.group(1) if m else None
            m = re.search(r"first_mb_in_slice (\d+)", j["sp"])
            got["mb"] = m.group(1) if m else None
        bad = {key: (v, sl[key]) for key, v in got.items() if v != sl[key]}
        if bad:
            errs.append(f"job {k}: visl got / ffmpeg reads {bad}")
    checked_ff = len(per_job)
else:
    checked_ff = 0
print(f"{what}: {checked} jobs compared with the report, {checked_ff} with ffmpeg's slice headers, "
      f"{len(errs)} mismatches")
for e in errs[:20]:
    print("FAIL:", e)
sys.exit(1 if errs else 0)
EOF
			n=$((n + 1))
		done
	done
	for ev in $T/events/visl_h264_controls/*/enable; do echo 0 >"$ev"; done
	[ $bad = 0 ] || fail "$bad of $n runs with mismatched controls"
}

# Prints "frames pending vb2_resv_pending present" of a decode report.
verifier_fence_counts() {
	python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
s = r["summary"]
ok = all(f["fence_after_qbuf"]["pending"] and f["fence_after_qbuf"]["driver"] == "vb2_resv"
         and (f["fence_after_qbuf"]["timeline"] or "").startswith(sys.argv[2] + ":") for f in r["frames"])
print(min(30, r["stream"]["pictures"]), s["frames"], s["fences_pending"], s["fences_pending_vb2_resv"], s["fences_present"], int(ok),
      s["qbuf_to_dqbuf_us"]["min"], r["vb2_resv"]["mode"] or "-", r["vb2_resv"]["attach"])
' "$1" "$2"
}

t_verifier_visl_fences() {
	verifier_need_streams
	# A transaction time of tens of ms: the job is still running (or not started) when we look.
	modprobe visl visl_transtime_ms=40 || fail "modprobe visl visl_transtime_ms=40"
	[ "$(cat /sys/module/visl/parameters/visl_transtime_ms)" = 40 ] || fail "visl_transtime_ms not set"
	local dev f node
	dev=$(visl_node) || fail "no visl video node"
	node=$(basename "$dev")
	f=$(verifier_streams | head -n 1)
	echo "stream $f, decoder $dev"

	# Without the module: no fence at all after QBUF.
	grep -q '^vb2_resv ' /proc/modules && fail "vb2_resv is loaded"
	"$VB2R" decode "$f" --device "$dev" --frames 30 --json /tmp/f-none.json -q || fail "decode without module"
	read -r want fr pend ours present all minq mode attach <<<"$(verifier_fence_counts /tmp/f-none.json "$node")"
	echo "without vb2_resv: $fr frames, $pend pending, $present present, QBUF->DQBUF min ${minq} us"
	[ "$fr" = "$want" ] || fail "decoded $fr frames, not $want"
	[ "$pend" = 0 ] && [ "$present" = 0 ] || fail "fences after QBUF without vb2_resv: $pend pending, $present present"
	[ "$minq" -ge 40000 ] || fail "QBUF->DQBUF $minq us < visl_transtime_ms"

	# With it (attached by the verifier itself through /dev/vb2_resv, mode queue): every frame.
	insmod_vb2r || fail "insmod vb2_resv"
	"$VB2R" decode "$f" --device "$dev" --frames 30 --mode queue --json /tmp/f-queue.json -q || fail "decode with vb2_resv"
	read -r want fr pend ours present all minq mode attach <<<"$(verifier_fence_counts /tmp/f-queue.json "$node")"
	echo "with vb2_resv (mode $mode, $attach): $fr frames, $pend pending, $ours from vb2_resv"
	[ "$fr" = "$want" ] || fail "decoded $fr frames, not $want"
	[ "$mode" = queue ] && [ "$attach" = attached ] || fail "report says mode $mode, attach $attach"
	[ "$all" = 1 ] && [ "$ours" = "$fr" ] || fail "not every frame had a pending vb2_resv fence after QBUF ($ours of $fr)"
	cat /sys/kernel/debug/vb2_resv/"$node"
	grep -q "detached" /sys/kernel/debug/vb2_resv/"$node" || fail "the verifier did not detach at the end"
	grep -q '^pending now: 0' /sys/kernel/debug/vb2_resv/"$node" || fail "fences left pending"
	n=$(sed -n 's/^fences attached: //p' /sys/kernel/debug/vb2_resv/"$node")
	[ "$n" -ge "$fr" ] || fail "the module attached $n fences for $fr frames"

	# With the job run from a second thread (as hardware runs it), a reader that polls the
	# dma-buf waits for the decode with the module, and not at all without it.
	"$VB2R" decode "$f" --device "$dev" --frames 60 --mode queue --async-queue --json /tmp/f-async.json -q ||
		fail "decode with vb2_resv, --async-queue"
	rmmod vb2_resv || fail "rmmod vb2_resv"
	"$VB2R" decode "$f" --device "$dev" --frames 60 --async-queue --json /tmp/f-async-none.json -q ||
		fail "decode without vb2_resv, --async-queue"
	python3 - /tmp/f-async.json /tmp/f-async-none.json <<'PY' || fail "the dma-buf is not readable before the decode ends with vb2_resv only"
import json, sys
w, wo = (json.load(open(p)) for p in sys.argv[1:3])
long = lambda r, k: sum(1 for f in r["frames"] if f[k] >= 20000)
readable = lambda r: sum(1 for f in r["frames"] if f["readable_after_queue"])
n, m = len(w["frames"]), len(wo["frames"])
# readable_after_queue: a zero-timeout poll(POLLIN) on the dma-buf right after the request was
# handed over (the job takes >= 40 ms, so the decode is not done then). poll_block_us: how long
# poll waited when the frame was collected; dqbuf_wait_us: from its return to DQBUF, i.e. the
# dma-buf looked readable while visl was still writing it.
for name, r, k in (("with vb2_resv", w, n), ("without it   ", wo, m)):
    print(f"{name}: readable right after queueing {readable(r)} of {k} frames; poll blocked >= 20 ms "
          f"on {long(r, 'poll_block_us')}, readable >= 20 ms before DQBUF on {long(r, 'dqbuf_wait_us')}; "
          f"QBUF->DQBUF min {r['summary']['qbuf_to_dqbuf_us']['min']} us")
ok = (readable(w) == 0 and long(w, "dqbuf_wait_us") == 0 and readable(wo) == m
      and long(wo, "poll_block_us") == 0 and wo["summary"]["qbuf_to_dqbuf_us"]["min"] >= 40000
      and w["summary"]["fences_pending_vb2_resv"] == n)
sys.exit(0 if ok else 1)
PY
	insmod_vb2r || fail "insmod vb2_resv"

	# Mode dqbuf: the fence comes at DQBUF, so none is pending after QBUF; but the module did
	# attach one per frame (its counter), which tells dqbuf from off (the negative control: the
	# same run in mode off attaches none) and from no module at all.
	local a0 a1 a2
	a0=$(sed -n 's/^fences attached: //p' /sys/kernel/debug/vb2_resv/"$node")
	"$VB2R" decode "$f" --device "$dev" --frames 10 --mode dqbuf --json /tmp/f-dqbuf.json -q || fail "decode, mode dqbuf"
	read -r want fr pend ours present all minq mode attach <<<"$(verifier_fence_counts /tmp/f-dqbuf.json "$node")"
	a1=$(sed -n 's/^fences attached: //p' /sys/kernel/debug/vb2_resv/"$node")
	echo "mode $mode ($attach): $fr frames, $pend pending after QBUF, $((a1 - a0)) fences attached"
	[ "$mode" = dqbuf ] && [ "$attach" = attached ] || fail "mode dqbuf: report says mode $mode, attach $attach"
	[ "$pend" = 0 ] || fail "mode dqbuf: $pend fences pending after QBUF"
	[ $((a1 - a0)) -ge "$fr" ] || fail "mode dqbuf: the module attached $((a1 - a0)) fences for $fr frames"
	"$VB2R" decode "$f" --device "$dev" --frames 10 --mode off --json /tmp/f-off.json -q || fail "decode, mode off"
	read -r want fr pend ours present all minq mode attach <<<"$(verifier_fence_counts /tmp/f-off.json "$node")"
	a2=$(sed -n 's/^fences attached: //p' /sys/kernel/debug/vb2_resv/"$node")
	echo "mode $mode ($attach): $fr frames, $pend pending after QBUF, $((a2 - a1)) fences attached"
	[ "$mode" = off ] && [ "$attach" = attached ] && [ "$pend" = 0 ] && [ "$a2" = "$a1" ] ||
		fail "mode off: mode $mode, attach $attach, $pend pending, $((a2 - a1)) fences attached"
}

t_verifier_bad_input() {
	[ -x "$VB2R" ] || fail "$VB2R not built"
	load_drivers vivid vim2m || fail "modprobe vivid vim2m"
	local good vivid vim2m n bad=0
	good=$(verifier_streams | head -n 1)
	[ -n "$good" ] || fail "no test stream"
	# No stateless decoder on the machine at all (visl not loaded yet).
	grep -q '^visl ' /proc/modules && fail "visl is loaded"
	"$VB2R" decode "$good" >/tmp/bad-out 2>/tmp/bad-err && fail "decode without any decoder succeeded"
	cat /tmp/bad-err
	[ "$(grep -c . /tmp/bad-err)" = 1 ] && grep -q "no stateless H.264 decoder" /tmp/bad-err ||
		fail "no decoder: not one clear line"
	load_drivers visl || fail "modprobe visl"
	for n in /sys/class/video4linux/video*; do
		[ "$(basename "$(readlink -f "$n/device/driver")")" = vivid ] && { vivid=/dev/$(basename "$n"); break; }
	done
	for n in /sys/class/video4linux/video*; do
		[ "$(basename "$(readlink -f "$n/device/driver")")" = vim2m ] && { vim2m=/dev/$(basename "$n"); break; }
	done
	[ -n "${vivid:-}" ] && [ -n "${vim2m:-}" ] || fail "no vivid or vim2m node"
	mkdir -p /tmp/bad
	local S=$VB2R_REPO/userspace/tests/streams
	for f in bad-empty.h264 bad-not-h264.png bad-mp4-container.mp4 bad-truncated.h264 \
		bad-high10.h264 bad-high422.h264 bad-interlaced.h264; do
		[ -f "$S/$f" ] || fail "missing $S/$f (scripts/make-streams.sh --small)"
	done
	head -c 4096 /dev/urandom | tr -d '\000\001' >/tmp/bad/random.bin
	# case | expected words in the one error line | arguments
	local cases=(
		"missing file|/tmp/bad/nope.h264|decode /tmp/bad/nope.h264"
		"a directory|not a regular file|decode /tmp/bad"
		"empty|empty|decode $S/bad-empty.h264"
		"random bytes|not an H.264|decode /tmp/bad/random.bin"
		"PNG|not an H.264|decode $S/bad-not-h264.png"
		"MP4 container|not an H.264|decode $S/bad-mp4-container.mp4"
		"truncated|truncated|decode $S/bad-truncated.h264"
		"High 10|unsupported|decode $S/bad-high10.h264"
		"High 4:2:2|unsupported|decode $S/bad-high422.h264"
		"interlaced|interlaced|decode $S/bad-interlaced.h264"
		"not a stateless decoder|not a stateless H.264 decoder|decode $good --device $vivid"
		"m2m, not H.264|offers no H264_SLICE|decode $good --device $vim2m"
		"missing device|/dev/video99|decode $good --device /dev/video99"
		"not a device|not a device node|decode $good --device /etc/passwd"
		"bad mode|mode|decode $good --mode sideways"
	)
	local c
	for c in "${cases[@]}"; do
		IFS='|' read -r what want args <<<"$c"
		# shellcheck disable=SC2086
		"$VB2R" $args >/tmp/bad/out 2>/tmp/bad/err
		rc=$?
		lines=$(grep -c . /tmp/bad/err)
		printf '%-24s rc=%s: %s\n' "$what" "$rc" "$(head -n 1 /tmp/bad/err)"
		if [ $rc = 0 ] || [ $rc -ge 101 ]; then
			echo "FAIL: $what: exit $rc"; bad=$((bad + 1)); continue
		fi
		if grep -qi 'panicked' /tmp/bad/err; then
			echo "FAIL: $what: panic"; bad=$((bad + 1)); continue
		fi
		# clap's usage errors are several lines by design; ours are one.
		if [ "$what" != "bad mode" ] && [ "$lines" != 1 ]; then
			echo "FAIL: $what: $lines lines on stderr"; cat /tmp/bad/err; bad=$((bad + 1)); continue
		fi
		grep -qiF -- "$want" /tmp/bad/err || { echo "FAIL: $what: no '$want' in the message"; bad=$((bad + 1)); }
	done
	[ $bad = 0 ] || fail "$bad bad inputs handled wrong"
}

# The module's mode is module-wide: a run that sets its own (decode --mode, verify --modes) sets
# the one it found back at the end, also when the run fails half-way.
t_verifier_mode_restored() {
	verifier_need_streams
	local dev f m
	dev=$(visl_node_loaded) || fail "no visl video node"
	f=$(verifier_streams | head -n 1)
	insmod_vb2r mode=dqbuf || fail "insmod vb2_resv mode=dqbuf"
	vb2r_mode() { cat /sys/kernel/debug/vb2_resv/mode; }
	[ "$(vb2r_mode)" = dqbuf ] || fail "mode after insmod mode=dqbuf: $(vb2r_mode)"
	"$VB2R" decode "$f" --device "$dev" --frames 3 --mode queue --json /tmp/mr.json -q || fail "decode --mode queue"
	jq -c .vb2_resv /tmp/mr.json
	jq -e '.vb2_resv.mode == "queue" and .vb2_resv.mode_before == "dqbuf"' /tmp/mr.json >/dev/null ||
		fail "the run did not report mode queue (before: dqbuf)"
	m=$(vb2r_mode)
	[ "$m" = dqbuf ] || fail "decode --mode queue left the module in mode $m"
	"$VB2R" verify "$f" --device "$dev" --frames 2 --no-rgb --implicit-sync-hold-ms 0 --modes off,queue >/dev/null ||
		fail "verify --modes off,queue"
	m=$(vb2r_mode)
	[ "$m" = dqbuf ] || fail "verify --modes off,queue left the module in mode $m"
	# A run that fails after it set the mode: the external import fails on llvmpipe at frame 0
	# (verifier.egl.external-import), inside the decode loop.
	"$VB2R" verify "$f" --device "$dev" --frames 2 --no-rgb --implicit-sync-hold-ms 0 --modes queue \
		--import external >/dev/null 2>/tmp/mr.err && echo "(external import works here: not a failing run)"
	cat /tmp/mr.err
	m=$(vb2r_mode)
	[ "$m" = dqbuf ] || fail "a failed verify --modes queue left the module in mode $m"
	echo "mode dqbuf kept across decode --mode queue, verify --modes off,queue and a failed run"
}
