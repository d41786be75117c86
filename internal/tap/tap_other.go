//go:build !linux

package tap

import "os"

// Open fails: tap devices are a Linux feature.
func Open(name string) (*os.File, error) {
	return nil, &Error{Op: OpOpenTun, Name: name, Err: ErrUnsupported}
}

// SetOffload fails: tap devices are a Linux feature.
func SetOffload(f *os.File, flags uint32) error {
	return &Error{Op: OpSetOffload, Name: f.Name(), Err: ErrUnsupported}
}

// Name fails: tap devices are a Linux feature.
func Name(f *os.File) (string, error) { return "", ErrUnsupported }
