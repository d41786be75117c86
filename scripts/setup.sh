#!/usr/bin/env bash
# The first of ember's two commands: installs what is missing, builds ember
# (bin/ember) and the test guest (build/guest), then boots a microVM through
# Firecracker's API on a Unix socket and shows its console. The guest prints
# its markers and reboots, which ends ember with exit code 0, as Firecracker.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages
ensure_go
echo "== building ember ($(go version))"
CGO_ENABLED=0 go build -trimpath -o bin/ember ./cmd/ember
echo "== building the guest (Debian's kernel, busybox, an ext4 root)"
guest/build.sh

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sock=$work/ember.sock
cp --sparse=always build/guest/rootfs.ext4 "$work/rootfs.ext4"

echo "== starting ember on $sock"
bin/ember --api-sock "$sock" &
ember_pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done

api() { curl -sS --fail-with-body --unix-socket "$sock" -X "$1" "http://localhost$2" ${3:+-H 'Content-Type: application/json' -d "$3"}; }
api PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 256}'
api PUT /boot-source "{\"kernel_image_path\": \"$PWD/build/guest/vmlinux\", \"initrd_path\": \"$PWD/build/guest/initramfs.cpio.gz\", \"boot_args\": \"console=ttyS0 reboot=k panic=1 ember.end=reboot\"}"
api PUT /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$work/rootfs.ext4\", \"is_root_device\": true, \"is_read_only\": false}"
api PUT /actions '{"action_type": "InstanceStart"}'
echo "== GET / says: $(api GET /)"
wait "$ember_pid" && code=0 || code=$?
echo "== the guest rebooted; ember exited with code $code"
exit "$code"
