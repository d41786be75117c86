# Shared by scripts/setup.sh and scripts/test.sh: installs what ember needs on
# a Debian or Ubuntu machine. Source it; it defines functions only.

GO_VERSION=1.26.8

# as_root runs a command as root (directly when already root).
as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ensure_packages installs the Debian packages ember, its tests and its guest
# build use, running apt-get update only when something is missing.
ensure_packages() {
	local pkgs=(qemu-system-x86 busybox-static lz4 e2fsprogs cpio iproute2 iputils-ping curl ca-certificates kmod file gcc libc6-dev)
	local missing=()
	for p in "${pkgs[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		echo "installing: ${missing[*]}" >&2
		as_root apt-get update -qq
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
}

# ensure_go puts a Go of at least $GO_VERSION first on PATH. Where the
# distribution's Go is older, it fetches the toolchain from the Go module
# proxy (the module golang.org/toolchain), which any Go can download.
ensure_go() {
	local want=$GO_VERSION
	for d in /usr/local/go/bin "$HOME/go/bin"; do
		[ -x "$d/go" ] && PATH=$d:$PATH
	done
	if command -v go >/dev/null && go_at_least "$(go env GOVERSION 2>/dev/null)" "$want"; then
		return
	fi
	if ! command -v go >/dev/null; then
		echo "installing Debian's Go to fetch Go $want" >&2
		as_root apt-get update -qq
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null
	fi
	local mod=golang.org/toolchain@v0.0.1-go$want.linux-$(go env GOARCH)
	local dir
	dir=$(cd /tmp && GOFLAGS=-mod=mod GO111MODULE=on go mod download -json "$mod" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
	[ -x "$dir/bin/go" ] || { echo "could not fetch Go $want from the module proxy" >&2; exit 1; }
	PATH=$dir/bin:$PATH
	export GOTOOLCHAIN=local
}

# go_at_least VERSION MIN: true if "goX.Y.Z" >= MIN.
go_at_least() {
	local have=${1#go}
	[ -n "$have" ] && [ "$(printf '%s\n%s\n' "$2" "$have" | sort -V | head -1)" = "$2" ]
}
