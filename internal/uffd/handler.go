package uffd

import (
	"context"
	"net"
	"os"
	"sync/atomic"
)

// Stats counts what a Handler did; tests use it to prove that faults reached
// the handler rather than being filled by the kernel.
type Stats struct {
	Faults  uint64 // PAGEFAULT events read
	Copied  uint64 // pages filled from the memory file
	Zeroed  uint64 // pages filled with zeros after a REMOVE
	Removes uint64 // REMOVE events read
	Retries uint64 // UFFDIO_COPY/ZEROPAGE answered EAGAIN and retried
	Races   uint64 // page already present (EEXIST); waiters woken instead
}

// Handler serves one VMM's page faults from a memory file.
type Handler struct {
	mem *os.File

	faults, copied, zeroed, removes, retries, races atomic.Uint64
}

// NewHandler returns a handler serving pages from memFile, the snapshot's
// memory file. The handler does not close memFile.
func NewHandler(memFile *os.File) *Handler {
	return &Handler{mem: memFile}
}

// Stats returns the handler's counters so far.
func (h *Handler) Stats() Stats {
	return Stats{
		Faults:  h.faults.Load(),
		Copied:  h.copied.Load(),
		Zeroed:  h.zeroed.Load(),
		Removes: h.removes.Load(),
		Retries: h.retries.Load(),
		Races:   h.races.Load(),
	}
}

// Serve is a page-fault handler: it accepts one handshake on conn, then
// serves faults from memFile until ctx ends (returning ctx.Err()) or the
// VMM closes its connection (returning nil). See Handler.Serve.
func Serve(ctx context.Context, conn *net.UnixConn, memFile *os.File) error {
	return NewHandler(memFile).Serve(ctx, conn)
}
