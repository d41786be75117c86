// Package bootargs builds the guest kernel command line the way Firecracker
// does: the user's boot_args (or Firecracker's default) split at the first
// unquoted " -- " into kernel arguments and init arguments, with everything
// ember appends (pci=off, root=..., virtio_mmio.device=...) inserted before
// the init arguments, and the whole line bounded by a capacity that counts
// the terminating NUL.
package bootargs

import (
	"errors"
	"strings"
)

// Default is Firecracker's command line when boot_args is absent.
const Default = "reboot=k panic=1 nomodule 8250.nr_uarts=0 i8042.noaux i8042.nomux i8042.dumbkbd swiotlb=noforce"

// MaxSize is the x86 command line capacity, NUL included.
const MaxSize = 2048

const initSeparator = " -- "

// The errors, with the texts Firecracker's command line builder prints.
var (
	ErrInvalidCapacity = errors.New("Invalid cmdline capacity provided.")
	ErrInvalidASCII    = errors.New("String contains a non-printable ASCII character.")
	ErrTooLarge        = errors.New("Inserting string would make command line too long.")
	ErrNullTerminator  = errors.New("Null terminator detected in the command line structure.")
	ErrNoBootArgs      = errors.New("Cmdline cannot contain only init args.")
)

// Cmdline is a kernel command line under construction.
type Cmdline struct {
	boot, init string
	capacity   int
}

// Parse splits raw at the first " -- " not inside double quotes and checks
// that it fits in capacity bytes with its NUL. Like Firecracker, it does not
// check the characters of raw; only strings inserted later are checked.
func Parse(raw string, capacity int) (*Cmdline, error) {
	if capacity <= 0 {
		return nil, ErrInvalidCapacity
	}
	boot, init := raw, ""
	for off := 0; ; {
		i := strings.Index(raw[off:], initSeparator)
		if i < 0 {
			break
		}
		i += off
		if strings.Count(raw[:i], `"`)%2 == 0 {
			boot, init = raw[:i], raw[i+len(initSeparator):]
			break
		}
		off = i + 1
	}
	boot, init = strings.TrimSpace(boot), strings.TrimSpace(init)
	size := len(boot) + 1
	if init != "" {
		size += len(initSeparator) + len(init)
	}
	if size > capacity {
		return nil, ErrInvalidCapacity
	}
	return &Cmdline{boot: boot, init: init, capacity: capacity}, nil
}

// Clone returns an independent copy, so a failed boot does not change the
// configured command line.
func (c *Cmdline) Clone() *Cmdline {
	d := *c
	return &d
}

func (c *Cmdline) size() int {
	n := len(c.boot) + 1
	if c.init != "" {
		n += len(initSeparator) + len(c.init)
	}
	return n
}

// Insert appends s (trimmed) to the kernel arguments, before any init
// arguments. s must be printable ASCII and fit the capacity.
func (c *Cmdline) Insert(s string) error {
	s = strings.TrimSpace(s)
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return ErrInvalidASCII
		}
	}
	n := c.size() + len(s)
	if c.boot != "" {
		n++
	}
	if n > c.capacity {
		return ErrTooLarge
	}
	if c.boot != "" {
		c.boot += " "
	}
	c.boot += s
	return nil
}

// Has reports whether the kernel arguments contain the exact word w or a
// parameter named w (w=...).
func (c *Cmdline) Has(w string) bool {
	for _, f := range strings.Fields(c.boot) {
		if f == w || strings.HasPrefix(f, w+"=") {
			return true
		}
	}
	return false
}

// String returns the final command line: kernel arguments, then " -- " and
// the init arguments if there are any. It fails where the loaded line would
// be unusable, as Firecracker's does.
func (c *Cmdline) String() (string, error) {
	var s string
	switch {
	case c.boot == "" && c.init == "":
		return "", nil
	case c.boot == "":
		return "", ErrNoBootArgs
	case c.init == "":
		s = c.boot
	default:
		s = c.boot + initSeparator + c.init
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "", ErrNullTerminator
	}
	return s, nil
}

// Root returns the arguments Firecracker adds for a root block device:
// root=/dev/vda (or root=PARTUUID=<uuid>) then ro or rw.
func Root(partUUID string, readOnly bool) []string {
	root := "root=/dev/vda"
	if partUUID != "" {
		root = "root=PARTUUID=" + partUUID
	}
	if readOnly {
		return []string{root, "ro"}
	}
	return []string{root, "rw"}
}
