package main

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// A trimmed QEMU smaps: binary, heap, guest RAM (128 MiB), TCG's code
// buffer, the kernel file, a library and the stack.
const qemuSmaps = `555671e0c000-555672213000 r--p 00000000 fe:00 10166293                   /usr/bin/qemu-system-x86_64
Size:               4124 kB
Rss:                4000 kB
Pss:                4000 kB
Shared_Clean:       1000 kB
Shared_Dirty:          0 kB
Private_Clean:      3000 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
Swap:                  0 kB
VmFlags: rd mr mw me sd
555693c8a000-555694758000 rw-p 00000000 00:00 0                          [heap]
Size:              11064 kB
Rss:                4480 kB
Private_Dirty:      4480 kB
Anonymous:          4480 kB
7fcd5be00000-7fcd63e00000 rw-p 00000000 00:00 0 
Size:             131072 kB
Rss:               79872 kB
Private_Dirty:     79872 kB
Anonymous:         79872 kB
7fcd64000000-7fcda3fff000 rwxp 00000000 00:00 0 
Size:            1048572 kB
Rss:               43008 kB
Anonymous:         43008 kB
7fcd58a00000-7fcd5bcc7000 rw-p 00000000 fe:00 5314339                    /g/vmlinux
Size:              51996 kB
Rss:               45376 kB
Shared_Clean:      45376 kB
7fcdaaa37000-7fcdaab8d000 r-xp 00026000 fe:00 326269                     /usr/lib/x86_64-linux-gnu/libc.so.6
Size:               1368 kB
Rss:                1092 kB
Shared_Clean:       1092 kB
7ffc1e0d0000-7ffc1e0f1000 rw-p 00000000 00:00 0                          [stack]
Size:                132 kB
Rss:                  20 kB
Anonymous:            20 kB
7ffc1e1d0000-7ffc1e1d2000 r-xp 00000000 00:00 0                          [vdso]
Size:                  8 kB
Rss:                   4 kB
`

func TestClassifyQEMU(t *testing.T) {
	maps, err := parseSmaps(strings.NewReader(qemuSmaps))
	if err != nil {
		t.Fatal(err)
	}
	if len(maps) != 8 {
		t.Fatalf("%d mappings, want 8", len(maps))
	}
	u, err := classify(maps, 128, []string{"/g/vmlinux", "/g/initramfs.cpio.gz"})
	if err != nil {
		t.Fatal(err)
	}
	want := memUse{
		Total:    4000 + 4480 + 79872 + 43008 + 45376 + 1092 + 20 + 4,
		GuestRAM: 79872,
		TCG:      43008,
		BootFile: 45376,
		Binary:   4000 + 1092 + 4, // the vdso counts with the code
		Anon:     4480 + 20,
		Shared:   1000 + 45376 + 1092,
	}
	if u != want {
		t.Errorf("classify =\n%+v, want\n%+v", u, want)
	}
	if got := u.Overhead(); got != want.Total-79872 {
		t.Errorf("Overhead = %d", got)
	}
	if got := u.add(u); got.Total != 2*u.Total || got.TCG != 2*u.TCG {
		t.Errorf("add = %+v", got)
	}
}

func TestClassifyNoGuestRAM(t *testing.T) {
	maps, err := parseSmaps(strings.NewReader(qemuSmaps))
	if err != nil {
		t.Fatal(err)
	}
	// A 256 MiB guest has no mapping here: the 1 GiB code buffer is
	// executable and far too big, so it must not be taken for guest RAM.
	if _, err := classify(maps, 256, nil); !errors.Is(err, ErrNoGuestRAM) {
		t.Fatalf("err = %v, want ErrNoGuestRAM", err)
	}
	// Without a guest (ember's own process) everything counts.
	u, err := classify(maps, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if u.GuestRAM != 0 || u.Overhead() != u.Total {
		t.Errorf("no guest: %+v", u)
	}
}

func TestParseSmapsBadHeader(t *testing.T) {
	if _, err := parseSmaps(strings.NewReader("0-1 r--p\nSize: 4 kB\n")); err == nil {
		t.Fatal("a header with two fields was accepted")
	}
}

func TestMeasureMemSelf(t *testing.T) {
	u, err := measureMem(os.Getpid(), 0, nil)
	if err != nil {
		t.Skipf("SKIP: /proc/self/smaps unreadable here (%v); memory figures are NOT checked", err)
	}
	if u.Total <= 0 || u.Binary <= 0 {
		t.Errorf("our own memory: %+v", u)
	}
}
