//go:build !linux

package uffd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
)

var errNoUserfaultfd = fmt.Errorf("userfaultfd is Linux-only: %w", errors.ErrUnsupported)

// Register is unsupported off Linux.
func Register(mappings []Mapping) (*os.File, error) {
	return nil, &vmmError{kind: ErrCreate, err: errNoUserfaultfd}
}

// Handshake is unsupported off Linux.
func Handshake(ctx context.Context, path string, mappings []Mapping, uffd *os.File) (*net.UnixConn, error) {
	return nil, &vmmError{kind: ErrSend, err: errNoUserfaultfd}
}

// Serve is unsupported off Linux.
func (h *Handler) Serve(ctx context.Context, conn *net.UnixConn) error {
	return errNoUserfaultfd
}
