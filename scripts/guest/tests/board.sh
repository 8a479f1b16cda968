# The board kit in the guest: `vb2-resv doctor` (userspace/src/doctor.rs) and
# scripts/board-evidence.sh, run against visl, vb2_resv and Mesa's llvmpipe.
# shellcheck shell=bash

TEST_TIMEOUT[doctor.x86]=240
TEST_TIMEOUT[doctor.arm64]=240
TEST_TIMEOUT[board.evidence-script]=600

VB2R=${VB2R_BIN:-$VB2R_REPO/target/release/vb2-resv}
# The kernel build tree the guest booted from (its modules are under VB2R_MODROOT=KDIR/modroot;
# the arm64 guest mounts it at VB2R_KDIR): doctor reads the running kernel's config from its
# .config (the guest kernels have no /proc/config.gz) and checks its rust/ artefacts.
board_kdir() { echo "${VB2R_KDIR:-$(dirname "${VB2R_MODROOT:?}")}"; }

# doctor_expect JSON COND WHAT [COND WHAT]...: each COND a python condition over r (the report)
# and c (its checks by id), all in one python3 run (about 2 s each under the arm64 guest's TCG).
# Prints "ok: WHAT" or "FAIL: WHAT: not (COND)" for each, the report's checks once after a
# failure, and fails when any COND is false.
doctor_expect() {
	python3 - "$@" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
c = {x["id"]: x for x in r["checks"]}
failed = False
for cond, what in zip(sys.argv[2::2], sys.argv[3::2]):
    if eval(cond):
        print(f"ok: {what}")
    else:
        print(f"FAIL: {what}: not ({cond})")
        failed = True
if failed:
    for x in r["checks"]:
        print(f"  [{x['status']}] {x['id']}: {x['summary']}" + (f" | fix: {x['fix']}" if x['fix'] else ""))
sys.exit(1 if failed else 0)
EOF
}

# The doctor test for one guest: the problems of a machine without the module or a decoder, each
# named with its fix; then everything found once visl and vb2_resv are there.
doctor_guest_test() {
	local kdir rc=0
	kdir=$(board_kdir)
	[ -x "$VB2R" ] || fail "$VB2R not built"
	cleanup_modules

	echo "=== 1. no decoder, no vb2_resv, no build tree"
	"$VB2R" doctor --kdir /nonexistent >/tmp/doc1.txt || fail "doctor exited $? with problems found (it must exit 0 whenever it ran)"
	cat /tmp/doc1.txt
	"$VB2R" doctor --json --kdir /nonexistent >/tmp/doc1.json || fail "doctor --json exited $?"
	doctor_expect /tmp/doc1.json \
		'c["decoder"]["status"] == "problem" and "visl" in c["decoder"]["fix"]' "the missing decoder is a problem with its fix" \
		'c["vb2_resv"]["status"] == "problem" and "insmod vb2_resv.ko" in c["vb2_resv"]["fix"]' "vb2_resv not loaded is a problem with its fix" \
		'c["build-tree"]["status"] == "problem" and "rust/" in c["build-tree"]["fix"]' "no build tree is a problem with its fix" \
		'r["problems"] == sum(1 for x in r["checks"] if x["status"] == "problem") >= 3 and r["decoder"] is None' "problems counted" || rc=1
	for id in decoder vb2_resv build-tree; do
		grep -q "^\[PROBLEM\] $id: " /tmp/doc1.txt || { echo "FAIL: the text report does not name the $id problem"; rc=1; }
	done
	[ "$(grep -c '^ *fix: ' /tmp/doc1.txt)" -ge 3 ] || { echo "FAIL: fewer than 3 fix lines in the text report"; rc=1; }
	tail -n 1 /tmp/doc1.txt | grep -qE '^doctor: [0-9]+ problem' || { echo "FAIL: no summary line"; rc=1; }

	echo "=== 2. a build tree without rust/ artefacts"
	mkdir -p /tmp/fake-kdir/include/config /tmp/fake-kdir/include/generated
	cp "$kdir/.config" "$kdir/Makefile" /tmp/fake-kdir/
	cp "$kdir/include/config/kernel.release" "$kdir/include/config/auto.conf" /tmp/fake-kdir/include/config/
	"$VB2R" doctor --json --no-gpu --kdir /tmp/fake-kdir >/tmp/doc2.json || fail "doctor --json exited $?"
	doctor_expect /tmp/doc2.json 'c["build-tree"]["status"] == "problem" and any("rust/libcore.rmeta" in d for d in c["build-tree"]["details"])' "a tree without rust/ is a problem naming the missing files" || rc=1

	echo "=== 3. visl and vb2_resv loaded, the guest kernel's own build tree"
	load_drivers visl || fail "modprobe visl"
	insmod_vb2r attach=visl || fail "insmod vb2_resv.ko attach=visl"
	"$VB2R" doctor --kdir "$kdir" | tee /tmp/doc3.txt || fail "doctor exited $?"
	"$VB2R" doctor --json --kdir "$kdir" >/tmp/doc3.json || fail "doctor --json exited $?"
	local expect=(
		'r["decoder"]["driver"] == "visl" and c["decoder"]["status"] == "ok"' "finds visl as the decoder"
		'c["vb2_resv"]["status"] == "ok" and r["vb2_resv_loaded"] and r["vb2_resv_mode"] and "attached to" in c["vb2_resv"]["summary"]' "finds vb2_resv loaded, its mode, attached to visl"
		'c["mesa"]["status"] == "ok" and c["mesa"]["summary"].startswith("Mesa 2") and any("EGL_EXT_image_dma_buf_import yes" in d for d in c["mesa"]["details"])' "finds Mesa with dma-buf import"
		'c["kernel.rust"]["status"] == "ok" and c["kernel.options"]["status"] == "ok"' "CONFIG_RUST and the fragment's options"
		'c["build-tree"]["status"] != "problem" or c["build-tree"]["fix"]' "a build-tree problem comes with its fix"
	)
	case "$(uname -m)" in
	x86_64)
		expect+=(
			'c["build-tree"]["status"] == "ok" and any("x86_64 proc-macro: usable here" in d for d in c["build-tree"]["details"])' "the rust/ artefacts, usable on this machine"
			'r["problems"] == 0' "no problem left"
		) ;;
	aarch64)
		# The arm64 kernel is cross-built on the x86_64 host, as on a PineTab2 owner's cross-build
		# host: its tree is complete, but rust/libmacros.so (a proc-macro rustc loads) is x86_64,
		# so no module can be built against it on the board. doctor names that, and nothing else.
		expect+=(
			'r["arch"] == "aarch64" and any("not checked" in d for d in c["kernel.options"]["details"])' "an aarch64 machine that is not a PineTab2: the board's options not wanted"
			'c["build-tree"]["status"] == "problem" and any("rust/libmacros.so is a x86_64 shared object, this machine is aarch64" in d for d in c["build-tree"]["details"]) and "CROSS_COMPILE=aarch64-linux-gnu-" in c["build-tree"]["fix"]' "the cross-built tree's x86_64 proc-macro is a problem with its fix"
			'r["problems"] == 1' "no other problem left"
		) ;;
	*) expect+=('False' "a guest of a known architecture (x86_64 or aarch64), not $(uname -m)") ;;
	esac
	doctor_expect /tmp/doc3.json "${expect[@]}" || rc=1
	return $rc
}

t_doctor_x86() {
	[ "$(uname -m)" = x86_64 ] || skip "doctor.x86 runs in the x86_64 guest (this is $(uname -m))"
	doctor_guest_test
}

# The same in the arm64 guest (scripts/arm64/test.sh): QEMU's virt machine has no node of the
# RK3566 either, so the board-only options and panfrost are not wanted, and its build tree is the
# cross-built one (see step 3).
t_doctor_arm64() {
	[ "$(uname -m)" = aarch64 ] || skip "doctor.arm64 runs in the arm64 guest (this is $(uname -m))"
	doctor_guest_test
}

# scripts/board-evidence.sh end to end against visl: doctor, insmod, the verifier's arms, rmmod
# and the tarball with the table, the JSON reports and the doctor report.
t_board_evidence_script() {
	local stream=$VB2R_REPO/userspace/tests/streams/baseline-320x240.h264 kdir
	kdir=$(board_kdir)
	[ -x "$VB2R" ] || fail "$VB2R not built"
	[ -n "$KO" ] && [ -f "$KO" ] || fail "vb2_resv.ko not built (VB2R_KO='$KO')"
	cleanup_modules
	load_drivers videobuf2_common || fail "modprobe videobuf2_common"
	modprobe visl visl_transtime_ms=50 || fail "modprobe visl"
	rm -rf /tmp/be /tmp/be.tar.gz /tmp/bx
	"$VB2R_REPO/scripts/board-evidence.sh" --out /tmp/be --ko "$KO" --bin "$VB2R" --kdir "$kdir" "$stream" \
		-- --frames 6 --import kwin --no-rgb --async-queue --modes off,dqbuf,queue --sample-at dqbuf,queued ||
		fail "scripts/board-evidence.sh exited $?"
	[ -f /tmp/be.tar.gz ] || fail "no tarball /tmp/be.tar.gz"
	[ -d /sys/module/vb2_resv ] && fail "vb2_resv is still loaded: the script did not rmmod it"
	mkdir -p /tmp/bx
	tar -xzf /tmp/be.tar.gz -C /tmp/bx || fail "the tarball does not unpack"
	tar -tzf /tmp/be.tar.gz | sort
	python3 - /tmp/bx/be <<'EOF' || fail "the tarball's contents"
import glob, json, os, sys
d = sys.argv[1]
errs = []
for f in ["evidence/table.md", "doctor.txt", "doctor.json", "doctor-after.json", "verify.log", "run.txt", "dmesg.txt"]:
    if not os.path.isfile(os.path.join(d, f)):
        errs.append(f"missing {f}")
doc = json.load(open(os.path.join(d, "doctor.json")))
if doc.get("schema") != "vb2-resv.doctor/1" or (doc.get("decoder") or {}).get("driver") != "visl":
    errs.append(f"doctor.json: schema {doc.get('schema')}, decoder {doc.get('decoder')}")
after = json.load(open(os.path.join(d, "doctor-after.json")))
if not after.get("vb2_resv_loaded"):
    errs.append("doctor-after.json: vb2_resv was not loaded while verify ran")
arms = sorted(glob.glob(os.path.join(d, "evidence", "arm-*.json")))
if len(arms) != 6:
    errs.append(f"{len(arms)} arm reports, want 6 (3 modes x 2 sampling points)")
modes = set()
for a in arms:
    j = json.load(open(a))
    if j.get("schema") != "vb2-resv.verify/1":
        errs.append(f"{os.path.basename(a)}: schema {j.get('schema')}")
    modes.add(os.path.basename(a).split("-")[1])
if modes != {"off", "dqbuf", "queue"}:
    errs.append(f"arms for modes {sorted(modes)}")
table = open(os.path.join(d, "evidence", "table.md")).read()
for m in ("off", "dqbuf", "queue"):
    if f"| {m} |" not in table:
        errs.append(f"table.md has no row for mode {m}")
if "vb2_resv" not in open(os.path.join(d, "dmesg.txt")).read():
    errs.append("dmesg.txt has no vb2_resv line (insmod/rmmod of the run)")
for e in errs:
    print("FAIL:", e)
print(f"{len(arms)} arm reports, doctor reports, table with modes {sorted(modes)}")
sys.exit(1 if errs else 0)
EOF
}
