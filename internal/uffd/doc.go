// Package uffd loads a snapshot's guest RAM lazily through userfaultfd, as
// Firecracker does for PUT /snapshot/load with mem_backend "Uffd".
//
// The VMM side maps guest RAM anonymous, creates a userfaultfd and registers
// every region in MISSING mode (Register), then connects to the page-fault
// handler's Unix stream socket and sends one message: the JSON array of
// Mapping values with the userfaultfd attached as SCM_RIGHTS (Handshake). It
// keeps that connection open for its whole life, so the handler learns the
// VMM's pid with SO_PEERCRED and sees EOF when the VMM exits.
//
// The handler side (Serve, Handler) accepts that one handshake, checks the
// mappings against the memory file, and answers each missing-page fault by
// copying the page from the file (UFFDIO_COPY). Ranges the VMM gives back with
// madvise(MADV_DONTNEED) (a balloon inflating) arrive as REMOVE events; a
// later fault there is answered with zeros, not with the file's stale page.
//
// Invariants: the JSON keys, their order and the deprecated page_size_kib
// (which holds bytes, not KiB) match Firecracker byte for byte; the
// userfaultfd is never switched to blocking mode, since its O_NONBLOCK flag is
// shared by both processes; every descriptor received is either kept by the
// handler or closed before Serve returns.
package uffd
