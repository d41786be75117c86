package vmm

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/metrics"
	"github.com/ember-vmm/ember/internal/syserr"
)

// consoleSink receives the guest's serial output. A write never blocks the
// guest: the descriptor is non-blocking (Firecracker sets O_NONBLOCK on
// stdout too) and what does not fit is dropped and counted.
type consoleSink struct {
	f     *os.File
	fd    int
	owned bool // opened from serial_out_path; closed with the sink
	stdin bool // stdin feeds the guest (only when the console is stdout)
	m     *metrics.Metrics
}

// openConsole returns the sink for the configured serial output.
func (c *Controller) openConsole() (*consoleSink, error) {
	if p := c.res.SerialOutPath; p != nil {
		f, err := logger.OpenTarget(*p)
		if err != nil {
			return nil, errors.New("Error creating legacy device: " + syserr.Display(err))
		}
		return &consoleSink{f: f, fd: int(f.Fd()), owned: true, m: c.cfg.Metrics}, nil
	}
	out := c.cfg.Stdout
	if out == nil {
		return &consoleSink{fd: -1, m: c.cfg.Metrics}, nil
	}
	fd := int(out.Fd())
	unix.SetNonblock(fd, true)
	return &consoleSink{f: out, fd: fd, stdin: true, m: c.cfg.Metrics}, nil
}

func (s *consoleSink) Write(p []byte) (int, error) {
	if s.fd < 0 {
		return len(p), nil
	}
	s.m.Uart.WriteCount.Add(uint64(len(p)))
	for rest := p; len(rest) > 0; {
		n, err := unix.Write(s.fd, rest)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			s.m.Uart.MissedWriteCount.Add(uint64(len(rest)))
			return len(p), nil
		}
		rest = rest[n:]
	}
	return len(p), nil
}

func (s *consoleSink) Close() error {
	if s.owned && s.f != nil {
		return s.f.Close()
	}
	return nil
}
