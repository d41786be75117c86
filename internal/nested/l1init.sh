#!/bin/sh
# /init of ember's nested-KVM L1 guest (busybox sh). It loads the virtio and
# kvm modules, mounts the guest-asset disk if there is one, runs
# /nested/run (the inner test) with its output on /dev/ttyS1, then reports
# "EMBER-NESTED <token> exit <status>" (or "... fatal <reason>") on ttyS1
# and powers off. Progress markers ("EMBER-NESTED: ...") go to the console.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
exec </dev/console >/dev/console 2>&1

. /nested/config

out=/dev/ttyS1
say() { echo "EMBER-NESTED: $*"; }
report() { echo "EMBER-NESTED $NESTED_TOKEN $*" >"$out"; }
fatal() {
	say "fatal: $*"
	report "fatal $*"
	sync
	poweroff -f
	sleep 10
}

say "init $(cut -d" " -f1 /proc/uptime)"
stty -F "$out" raw -echo 2>/dev/null || fatal "no second serial port ($out) for the inner output"

# insmod_list FILE: load the .ko files FILE lists from /nested/modules,
# skipping those already loaded, each with the MODULE.PARAM=VALUE words of
# the kernel command line that name it (as modprobe would).
insmod_list() {
	while read -r f; do
		[ -n "$f" ] || continue
		n=$(echo "${f%.ko}" | tr - _)
		[ -d "/sys/module/$n" ] && continue
		params=
		for w in $(cat /proc/cmdline); do
			case "$w" in "$n".*=*) params="$params ${w#"$n".}" ;; esac
		done
		# shellcheck disable=SC2086 # one word per parameter
		insmod "/nested/modules/$f" $params || return 1
	done <"$1"
}

grep -qw svm /proc/cpuinfo || fatal "the L1 CPU lacks svm (QEMU's -cpu max without nested SVM?)"
insmod_list /nested/modules/kvm_amd.load || fatal "loading kvm_amd failed"
[ -c /dev/kvm ] || fatal "no /dev/kvm after loading kvm_amd"
say "kvm_amd $(cd /sys/module/kvm_amd/parameters && for p in npt nested nrips vgif vls lbrv avic; do [ -f $p ] && printf '%s=%s ' $p "$(cat $p)"; done)"
for m in $NESTED_MODULES; do
	[ -f "/nested/modules/$m.load" ] || continue # built into the kernel
	insmod_list "/nested/modules/$m.load" || fatal "loading module $m failed"
done
say "kvm ready $(cut -d" " -f1 /proc/uptime)"

if [ -n "$NESTED_GUEST_DISK" ]; then
	# The test guest's initramfs has the virtio modules; only the block path
	# is needed here.
	M=/lib/modules/$(uname -r)
	for m in $(grep -E '/(virtio_ring|virtio|virtio_mmio|virtio_blk)\.ko$' "$M/ember.load"); do
		insmod "$M/$m" || fatal "insmod $m failed"
	done
	i=0
	while [ ! -b "$NESTED_GUEST_DISK" ] && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	[ -b "$NESTED_GUEST_DISK" ] || fatal "guest disk $NESTED_GUEST_DISK did not appear"
	mkdir -p /nested/guest
	mount -t ext4 -o ro "$NESTED_GUEST_DISK" /nested/guest || fatal "cannot mount the guest disk"
fi

ip link set lo up 2>/dev/null
mkdir -p /nested/work
cd /nested/work
# A heartbeat for the harness: an L1 whose kernel stops running even this
# is frozen, which nothing inside L1 can cause on its own.
(while :; do sleep 10; say "alive $(cut -d" " -f1 /proc/uptime)"; done) </dev/null &
say "inner start"
sh /nested/run </dev/null >"$out" 2>&1
rc=$?
say "inner exit $rc"
report "exit $rc"
sync
poweroff -f
sleep 10
