//go:build linux

package uffd

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// linux/userfaultfd.h, which x/sys/unix does not carry. The ioctl numbers
// were checked against the header's _IOWR/_IOR encoding (type 0xAA).
const (
	uffdAPI = 0xAA

	uffdioAPI      = 0xc018aa3f // _IOWR(0xAA, 0x3F, struct uffdio_api)
	uffdioRegister = 0xc020aa00 // _IOWR(0xAA, 0x00, struct uffdio_register)
	uffdioWake     = 0x8010aa02 // _IOR(0xAA, 0x02, struct uffdio_range)
	uffdioCopy     = 0xc028aa03 // _IOWR(0xAA, 0x03, struct uffdio_copy)
	uffdioZeropage = 0xc020aa04 // _IOWR(0xAA, 0x04, struct uffdio_zeropage)

	uffdFeatureEventRemove    = 1 << 3
	uffdioRegisterModeMissing = 1 << 0

	uffdEventPagefault = 0x12
	uffdEventRemove    = 0x15

	uffdMsgSize = 32
)

type uffdioAPIArg struct {
	API      uint64
	Features uint64
	Ioctls   uint64
}

type uffdioRange struct {
	Start uint64
	Len   uint64
}

type uffdioRegisterArg struct {
	Range  uffdioRange
	Mode   uint64
	Ioctls uint64
}

type uffdioCopyArg struct {
	Dst  uint64
	Src  uint64
	Len  uint64
	Mode uint64
	Copy int64
}

type uffdioZeropageArg struct {
	Range    uffdioRange
	Mode     uint64
	Zeropage int64
}

func ioctlPtr(fd int, req uintptr, arg unsafe.Pointer) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	if e != 0 {
		return e
	}
	return nil
}

// apiHandshake enables the userfaultfd API with the given features and
// returns the features the kernel granted.
func apiHandshake(fd int, features uint64) (uint64, error) {
	a := uffdioAPIArg{API: uffdAPI, Features: features}
	if err := ioctlPtr(fd, uffdioAPI, unsafe.Pointer(&a)); err != nil {
		return 0, err
	}
	return a.Features, nil
}

// registerMissing registers [start, start+length) for missing-page faults.
func registerMissing(fd int, start, length uint64) error {
	r := uffdioRegisterArg{Range: uffdioRange{Start: start, Len: length}, Mode: uffdioRegisterModeMissing}
	return ioctlPtr(fd, uffdioRegister, unsafe.Pointer(&r))
}

// copyPage resolves the fault on [dst, dst+len(src)) with src's bytes and
// wakes the faulting threads.
func copyPage(fd int, dst uint64, src []byte) error {
	c := uffdioCopyArg{
		Dst: dst,
		Src: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(src)))),
		Len: uint64(len(src)),
	}
	err := ioctlPtr(fd, uffdioCopy, unsafe.Pointer(&c))
	// The kernel reads src during the call; the Go heap does not move, so
	// keeping it reachable until here is enough.
	runtime.KeepAlive(src)
	return err
}

// zeroPage resolves the fault on [dst, dst+length) with the shared zero page.
func zeroPage(fd int, dst, length uint64) error {
	z := uffdioZeropageArg{Range: uffdioRange{Start: dst, Len: length}}
	return ioctlPtr(fd, uffdioZeropage, unsafe.Pointer(&z))
}

// wake resumes threads waiting on [start, start+length) whose page another
// fault's copy already filled.
func wake(fd int, start, length uint64) error {
	r := uffdioRange{Start: start, Len: length}
	return ioctlPtr(fd, uffdioWake, unsafe.Pointer(&r))
}
