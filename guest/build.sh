#!/usr/bin/env bash
# Builds ember's test guest from Debian packages:
#
#   vmlinux            ELF kernel with a PVH entry note (the bzImage payload, decompressed)
#   bzImage            the same kernel as Debian ships it (/boot/vmlinuz-*)
#   initramfs.cpio.gz  busybox + virtio modules + /init (guest/init/initramfs-init)
#                      + the test init as /sbin/init (guest/init/ember-init)
#                      + the guest tools (guest/tools/*, static Go) in /bin
#   rootfs.ext4        ext4 image with busybox, the same modules, tools and test init
#   kernel.config      the kernel's build configuration, for reference
#   manifest           inputs (script hash, package versions) and sha256 of each output
#
# into ${EMBER_GUEST_DIR:-<repo>/build/guest}. A second run with the same inputs
# does nothing; a changed script, init, tool source, busybox or kernel package
# version (as apt sees it) rebuilds. The tools need go in PATH. Runs are serialised by an flock on the output dir.
#
# Usage: guest/build.sh [--force | --check]
#   --force  rebuild even if up to date
#   --check  exit 0 if up to date, 1 if a build is needed; build nothing
# Environment:
#   EMBER_GUEST_DIR         output directory
#   EMBER_GUEST_KERNEL_PKG  kernel package or metapackage (default linux-image-cloud-amd64)
set -euo pipefail

GUEST_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$GUEST_SRC")
OUT=${EMBER_GUEST_DIR:-$REPO/build/guest}
KERNEL_SOURCE=${EMBER_GUEST_KERNEL_PKG:-linux-image-cloud-amd64}

FORMAT=1
ROOTFS_SIZE=64M
ROOTFS_UUID=5e2a6b1c-3f0d-4c8e-9a71-e3b3e7000001
ROOTFS_LABEL=ember-rootfs
ROOTFS_HASH_SEED=5e2a6b1c-3f0d-4c8e-9a71-e3b3e7000002
# File times inside the images, so identical inputs give identical outputs.
EPOCH=1704067200
OUTPUTS=(vmlinux bzImage initramfs.cpio.gz rootfs.ext4 kernel.config)

# Modules wanted in the guest, each with its dependencies from modules.dep.
# Names that are built into the kernel are skipped; REQUIRED ones must exist
# one way or the other.
MODULES=(
	virtio_ring virtio virtio_mmio
	virtio_blk
	failover net_failover virtio_net
	virtio_balloon virtio_rng virtio_mem
	vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport
	virtio_pmem nd_pmem
	ext4 jbd2 mbcache crc16 crc32c_generic
	i8042 atkbd serio
)
REQUIRED=(virtio_ring virtio virtio_mmio virtio_blk virtio_net ext4 i8042 atkbd)

log() { echo "guest/build.sh: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

mode=build
case "${1:-}" in
"") ;;
--force) mode=force ;;
--check) mode=check ;;
*) die "unknown argument '$1' (usage: build.sh [--force | --check])" ;;
esac

mkdir -p "$OUT" || die "cannot create $OUT"
OUT=$(cd "$OUT" && pwd)
exec 9>"$OUT/.build.lock"
flock 9

# ---- inputs -----------------------------------------------------------------

# TOOLS are the Go programs under guest/tools installed as /bin/<name>.
TOOLS=(vsockt)

script_hash() {
	local tool_src=() t
	for t in "${TOOLS[@]}"; do
		tool_src+=("$GUEST_SRC/tools/$t"/*.go)
	done
	cat "$GUEST_SRC/build.sh" "$GUEST_SRC/init/initramfs-init" "$GUEST_SRC/init/ember-init" "${tool_src[@]}" |
		sha256sum | cut -d' ' -f1
}

pkg_installed() {
	[[ "$(dpkg-query -W -f '${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

# apt_lists_fingerprint changes whenever apt-get update changes what apt-cache
# would answer, so an unchanged fingerprint spares a slow apt-cache lookup.
apt_lists_fingerprint() {
	shopt -s nullglob
	local lists=(/var/lib/apt/lists/*_Packages*)
	shopt -u nullglob
	if ((${#lists[@]} == 0)); then
		echo none
		return
	fi
	stat -c '%n %s %Y' "${lists[@]}" | sha256sum | cut -d' ' -f1
}

# resolve_kernel prints "<package> <version>" of the kernel image package that
# KERNEL_SOURCE (a metapackage or a concrete package) selects.
resolve_kernel() {
	local show version dep item name ver
	show=$(apt-cache show --no-all-versions "$KERNEL_SOURCE" 2>/dev/null) || return 1
	[[ -n "$show" ]] || return 1
	version=$(sed -n 's/^Version: //p' <<<"$show" | head -n1)
	dep=$(sed -n 's/^Depends: //p' <<<"$show" | head -n1)
	IFS=',' read -ra items <<<"$dep"
	for item in "${items[@]}"; do
		item=${item# }
		name=${item%% *}
		if [[ "$name" =~ ^linux-image-[0-9] ]]; then
			if [[ "$item" =~ \(=\ ([^\)]+)\) ]]; then
				ver=${BASH_REMATCH[1]}
			else
				ver=$(apt-cache show --no-all-versions "$name" 2>/dev/null | sed -n 's/^Version: //p' | head -n1)
			fi
			[[ -n "$ver" ]] || return 1
			echo "$name $ver"
			return 0
		fi
	done
	[[ -n "$version" ]] || return 1
	echo "$KERNEL_SOURCE $version"
}

# manifest_get KEY prints the value of KEY in the existing manifest.
manifest_get() {
	[[ -f "$OUT/manifest" ]] || return 1
	awk -v k="$1" '$1 == k { sub(/^[^ ]+ /, ""); print; found = 1; exit } END { exit !found }' "$OUT/manifest"
}

file_stamp() { stat -c '%s %Y %i' "$1"; }

# up_to_date succeeds when the manifest matches the current inputs and every
# output is still the file the manifest describes.
up_to_date() {
	[[ -f "$OUT/manifest" ]] || return 1
	[[ "$(manifest_get format)" == "$FORMAT" ]] || return 1
	[[ "$(manifest_get script)" == "$SCRIPT_HASH" ]] || return 1
	[[ "$(manifest_get kernel_source)" == "$KERNEL_SOURCE" ]] || return 1
	[[ "$(manifest_get busybox)" == "$BUSYBOX_VERSION" ]] || return 1
	local name line
	for name in "${OUTPUTS[@]}"; do
		[[ -f "$OUT/$name" ]] || return 1
		line=$(awk -v n="$name" '$1 == "output" && $2 == n { print $4, $5, $6 }' "$OUT/manifest")
		[[ "$line" == "$(file_stamp "$OUT/$name")" ]] || return 1
	done
	[[ "$(manifest_get apt_lists)" == "$LISTS" ]] && return 0
	# apt's view changed: still fresh if it selects the same kernel.
	local now
	now=$(resolve_kernel) || now=""
	if [[ -z "$now" ]]; then
		log "warning: apt knows no $KERNEL_SOURCE; keeping the built kernel"
		return 0
	fi
	[[ "$now" == "$(manifest_get kernel_package) $(manifest_get kernel_package_version)" ]] || return 1
	sed -i "s/^apt_lists .*/apt_lists $LISTS/" "$OUT/manifest"
}

# ---- tools ------------------------------------------------------------------

ensure_tools() {
	local missing=() pkg
	for pkg in "$@"; do
		pkg_installed "$pkg" || missing+=("$pkg")
	done
	((${#missing[@]} == 0)) && return 0
	[[ $EUID -eq 0 ]] || die "missing packages: ${missing[*]} (install them, or run as root)"
	log "installing ${missing[*]}"
	apt-get update -qq >&2 || die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
		die "apt-get install ${missing[*]} failed"
}

# ---- build steps ------------------------------------------------------------

# extract_vmlinux BZIMAGE OUT: decompresses the bzImage payload, whose offset
# (from the end of the setup sectors) and length are the setup header's
# payload_offset (0x248) and payload_length (0x24c).
extract_vmlinux() {
	local bz=$1 out=$2 magic setup_sects payload_offset payload_length start
	magic=$(od -An -c -j $((0x202)) -N 4 "$bz" | tr -d ' ')
	[[ "$magic" == HdrS ]] || die "$bz is not a bzImage (no HdrS)"
	setup_sects=$(od -An -tu1 -j $((0x1f1)) -N 1 "$bz" | tr -d ' ')
	((setup_sects == 0)) && setup_sects=4
	payload_offset=$(od -An -tu4 -j $((0x248)) -N 4 "$bz" | tr -d ' ')
	payload_length=$(od -An -tu4 -j $((0x24c)) -N 4 "$bz" | tr -d ' ')
	start=$(((setup_sects + 1) * 512 + payload_offset))
	dd if="$bz" of="$out.payload" bs=64K iflag=skip_bytes,count_bytes skip="$start" count="$payload_length" status=none ||
		die "cannot read the payload of $bz"
	# The build appends the decompressed size (le32) to the payload; gzip's
	# own trailer holds the same number, the other formats need it cut off.
	local head size stream="$out.payload"
	head=$(od -An -tx1 -N 6 "$out.payload" | tr -d ' \n')
	size=$(tail -c 4 "$out.payload" | od -An -tu4 | tr -d ' ')
	if [[ "$head" != 1f8b* ]]; then
		stream="$out.stream"
		head -c $((payload_length - 4)) "$out.payload" >"$stream"
	fi
	case "$head" in
	02214c18*)
		ensure_tools lz4
		lz4 -dc "$stream" >"$out" || die "lz4 payload did not decompress"
		;;
	1f8b*) gzip -dc "$stream" >"$out" || die "gzip payload did not decompress" ;;
	fd377a585a00)
		ensure_tools xz-utils
		xz -dc --single-stream "$stream" >"$out" || die "xz payload did not decompress"
		;;
	28b52ffd*)
		ensure_tools zstd
		zstd -dcq "$stream" >"$out" || die "zstd payload did not decompress"
		;;
	*) die "unknown bzImage payload compression (magic $head)" ;;
	esac
	[[ "$(stat -c %s "$out")" == "$size" ]] ||
		die "decompressed kernel is $(stat -c %s "$out") bytes, the bzImage says $size"
	rm -f "$out.stream"
	rm -f "$out.payload"
	[[ "$(od -An -tx1 -N 4 "$out" | tr -d ' ')" == 7f454c46 ]] || die "decompressed payload is not ELF"
}

# modname PATH sets MODNAME to the module name of PATH (dashes read as
# underscores, as the kernel does); no subshell, as it runs for every module.
modname() {
	MODNAME=${1##*/}
	MODNAME=${MODNAME%.ko}
	MODNAME=${MODNAME//-/_}
}

declare -A MOD_DEPS MOD_PATH MOD_SEEN BUILTIN
MOD_ORDER=()

visit_module() {
	local n=$1 d
	[[ -n "${MOD_SEEN[$n]:-}" ]] && return 0
	MOD_SEEN[$n]=1
	for d in ${MOD_DEPS[$n]}; do
		modname "$d"
		visit_module "$MODNAME"
	done
	MOD_ORDER+=("$n")
}

# plan_modules KMOD_DIR: fills MOD_ORDER with the wanted modules and their
# dependencies, each after everything it depends on.
plan_modules() {
	local dir=$1 line path want
	"$BUSYBOX" depmod -b "$W/pkg" "$KERNEL_RELEASE" || die "depmod failed"
	while IFS= read -r line; do
		path=${line%%:*}
		modname "$path"
		MOD_PATH[$MODNAME]=$path
		MOD_DEPS[$MODNAME]=${line#*:}
	done <"$dir/modules.dep"
	if [[ -f "$dir/modules.builtin" ]]; then
		while IFS= read -r line; do
			modname "$line"
			BUILTIN[$MODNAME]=1
		done <"$dir/modules.builtin"
	fi
	for want in "${MODULES[@]}"; do
		if [[ -n "${MOD_PATH[$want]:-}" ]]; then
			visit_module "$want"
		elif [[ -z "${BUILTIN[$want]:-}" ]] && [[ " ${REQUIRED[*]} " == *" $want "* ]]; then
			die "kernel $KERNEL_RELEASE has $want neither built in nor as a module"
		fi
	done
}

# make_tree DIR: the userland shared by the initramfs and the root file system.
make_tree() {
	local dir=$1 p rel kdir="$1/lib/modules/$KERNEL_RELEASE"
	mkdir -p "$dir"/{bin,sbin,usr/bin,usr/sbin,etc,dev,proc,sys,tmp,run,root,mnt}
	chmod 1777 "$dir/tmp"
	chmod 0700 "$dir/root"
	install -m 0755 "$BUSYBOX" "$dir/bin/busybox"
	while IFS= read -r p; do
		case "$p" in bin/busybox | sbin/init | linuxrc | init) continue ;; esac
		[[ "$p" == */* ]] && mkdir -p "$dir/${p%/*}"
		ln -s /bin/busybox "$dir/$p"
	done < <("$BUSYBOX" --list-full)
	install -m 0755 "$GUEST_SRC/init/ember-init" "$dir/sbin/init"
	for p in "${TOOLS[@]}"; do
		install -m 0755 "$W/tools/$p" "$dir/bin/$p"
	done
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$dir/etc/passwd"
	printf 'root:x:0:\n' >"$dir/etc/group"
	printf 'ember-guest\n' >"$dir/etc/hostname"
	printf 'kernel_release %s\nkernel_package %s %s\n' "$KERNEL_RELEASE" "$KERNEL_PKG" "$KERNEL_VERSION" >"$dir/etc/ember-guest"
	# A console node lets the kernel give init stdio before devtmpfs is up;
	# without root the inits re-open it from devtmpfs instead.
	mknod -m 0600 "$dir/dev/console" c 5 1 2>/dev/null || true
	mknod -m 0666 "$dir/dev/null" c 1 3 2>/dev/null || true
	mkdir -p "$kdir"
	: >"$kdir/ember.load"
	for p in "${MOD_ORDER[@]}"; do
		rel=${MOD_PATH[$p]}
		mkdir -p "$kdir/$(dirname "$rel")"
		cp "$W/pkg/lib/modules/$KERNEL_RELEASE/$rel" "$kdir/$rel"
		echo "$rel" >>"$kdir/ember.load"
	done
	cp "$W/pkg/lib/modules/$KERNEL_RELEASE/modules.builtin" "$kdir/" 2>/dev/null || true
	"$BUSYBOX" depmod -b "$dir" "$KERNEL_RELEASE" || die "depmod in $dir failed"
}

fix_times() { find "$1" -exec touch -h -d "@$EPOCH" {} +; }

# build_tools: the guest tools as static binaries, reproducibly (no cgo, no
# build id, trimmed paths), into $W/tools.
build_tools() {
	command -v go >/dev/null || die "go is not in PATH; it builds the guest tools (${TOOLS[*]})"
	mkdir -p "$W/tools"
	local t
	for t in "${TOOLS[@]}"; do
		(cd "$REPO" && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags='-s -w -buildid=' \
			-o "$W/tools/$t" "./guest/tools/$t") >&2 || die "go build guest/tools/$t failed"
	done
}

build() {
	ensure_tools busybox-static lz4 e2fsprogs cpio gzip

	local resolved
	resolved=$(resolve_kernel) || resolved=""
	if [[ -z "$resolved" ]]; then
		[[ $EUID -eq 0 ]] || die "apt knows no $KERNEL_SOURCE (run apt-get update as root)"
		log "apt knows no $KERNEL_SOURCE; running apt-get update"
		apt-get update -qq >&2 || die "apt-get update failed"
		LISTS=$(apt_lists_fingerprint)
		resolved=$(resolve_kernel) || die "apt knows no package $KERNEL_SOURCE"
	fi
	KERNEL_PKG=${resolved%% *}
	KERNEL_VERSION=${resolved#* }

	local cache="$OUT/cache" deb got
	mkdir -p "$cache"
	deb="$cache/${KERNEL_PKG}_${KERNEL_VERSION//:/%3a}_amd64.deb"
	if [[ ! -s "$deb" ]]; then
		log "downloading $KERNEL_PKG $KERNEL_VERSION"
		(cd "$W" && apt-get download -q "$KERNEL_PKG=$KERNEL_VERSION" 2>&1 | grep -v 'unsandboxed' >&2) || true
		got=$(find "$W" -maxdepth 1 -name "${KERNEL_PKG}_*.deb" | head -n1)
		if [[ -z "$got" && $EUID -eq 0 ]]; then
			# Stale package lists name a version the mirror no longer has.
			log "download failed; running apt-get update and trying again"
			apt-get update -qq >&2 || die "apt-get update failed"
			LISTS=$(apt_lists_fingerprint)
			resolved=$(resolve_kernel) || die "apt knows no package $KERNEL_SOURCE"
			KERNEL_PKG=${resolved%% *}
			KERNEL_VERSION=${resolved#* }
			deb="$cache/${KERNEL_PKG}_${KERNEL_VERSION//:/%3a}_amd64.deb"
			(cd "$W" && apt-get download -q "$KERNEL_PKG=$KERNEL_VERSION" 2>&1 | grep -v 'unsandboxed' >&2) || true
			got=$(find "$W" -maxdepth 1 -name "${KERNEL_PKG}_*.deb" | head -n1)
		fi
		[[ -n "$got" ]] || die "apt-get download $KERNEL_PKG=$KERNEL_VERSION failed"
		mv "$got" "$deb"
	fi

	log "unpacking $(basename "$deb")"
	mkdir -p "$W/pkg"
	dpkg-deb -x "$deb" "$W/pkg" || die "dpkg-deb -x $deb failed"
	local kdirs=("$W"/pkg/lib/modules/*)
	((${#kdirs[@]} == 1)) && [[ -d "${kdirs[0]}" ]] || die "$deb does not hold exactly one module tree"
	KERNEL_RELEASE=$(basename "${kdirs[0]}")
	local vmlinuz="$W/pkg/boot/vmlinuz-$KERNEL_RELEASE"
	[[ -f "$vmlinuz" ]] || die "$deb has no /boot/vmlinuz-$KERNEL_RELEASE"
	grep -q '^CONFIG_PVH=y' "$W/pkg/boot/config-$KERNEL_RELEASE" ||
		log "warning: $KERNEL_RELEASE lacks CONFIG_PVH; vmlinux will have no PVH entry"

	log "kernel $KERNEL_RELEASE: vmlinux, bzImage"
	extract_vmlinux "$vmlinuz" "$W/vmlinux"
	cp "$vmlinuz" "$W/bzImage"
	cp "$W/pkg/boot/config-$KERNEL_RELEASE" "$W/kernel.config"

	plan_modules "$W/pkg/lib/modules/$KERNEL_RELEASE"
	log "modules: ${MOD_ORDER[*]}"

	log "tools: ${TOOLS[*]}"
	build_tools

	log "initramfs.cpio.gz"
	make_tree "$W/initramfs"
	install -m 0755 "$GUEST_SRC/init/initramfs-init" "$W/initramfs/init"
	fix_times "$W/initramfs"
	(cd "$W/initramfs" && find . -mindepth 1 | LC_ALL=C sort |
		cpio --quiet -o -H newc -R 0:0 --reproducible) | gzip -9 -n >"$W/initramfs.cpio.gz"

	log "rootfs.ext4 ($ROOTFS_SIZE, UUID $ROOTFS_UUID)"
	make_tree "$W/rootfs"
	fix_times "$W/rootfs"
	E2FSPROGS_FAKE_TIME=$EPOCH mke2fs -q -F -t ext4 -b 4096 -L "$ROOTFS_LABEL" -U "$ROOTFS_UUID" \
		-E "hash_seed=$ROOTFS_HASH_SEED,root_owner=0:0" -d "$W/rootfs" "$W/rootfs.ext4" "$ROOTFS_SIZE" >/dev/null ||
		die "mke2fs failed"

	local name
	for name in "${OUTPUTS[@]}"; do
		mv -f "$W/$name" "$OUT/$name"
	done
	{
		echo "# ember test guest, written by guest/build.sh; do not edit"
		echo "format $FORMAT"
		echo "script $SCRIPT_HASH"
		echo "kernel_source $KERNEL_SOURCE"
		echo "busybox $BUSYBOX_VERSION"
		echo "apt_lists $LISTS"
		echo "kernel_package $KERNEL_PKG"
		echo "kernel_package_version $KERNEL_VERSION"
		echo "kernel_release $KERNEL_RELEASE"
		echo "rootfs_uuid $ROOTFS_UUID"
		echo "rootfs_label $ROOTFS_LABEL"
		echo "modules ${MOD_ORDER[*]}"
		echo "tools ${TOOLS[*]}"
		for name in "${OUTPUTS[@]}"; do
			echo "output $name $(sha256sum "$OUT/$name" | cut -d' ' -f1) $(file_stamp "$OUT/$name")"
		done
	} >"$W/manifest"
	mv -f "$W/manifest" "$OUT/manifest"
	# Keep only the package this build used.
	find "$cache" -maxdepth 1 -name '*.deb' ! -path "$deb" -delete
}

# ---- main -------------------------------------------------------------------

SCRIPT_HASH=$(script_hash)
LISTS=$(apt_lists_fingerprint)
BUSYBOX_VERSION=$(dpkg-query -W -f '${Version}' busybox-static 2>/dev/null || echo none)

if [[ $mode != force ]] && up_to_date; then
	log "up to date in $OUT"
	exit 0
fi
if [[ $mode == check ]]; then
	log "a build is needed in $OUT"
	exit 1
fi

start=$SECONDS
W=$(mktemp -d "$OUT/.work.XXXXXX")
trap 'rm -rf "$W"' EXIT
ensure_tools busybox-static
BUSYBOX_VERSION=$(dpkg-query -W -f '${Version}' busybox-static)
BUSYBOX=$(dpkg-query -L busybox-static | grep -m1 '/bin/busybox$')
[[ -x "$BUSYBOX" ]] || die "busybox-static installs no /bin/busybox"
build
log "built in $OUT in $((SECONDS - start))s"
