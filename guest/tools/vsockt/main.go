//go:build linux

// Command vsockt is the test guest's vsock tool: a static program the guest
// image carries as /bin/vsockt, so end-to-end tests can move data between
// the host and the guest over AF_VSOCK and check it arrived whole.
//
//	vsockt [-n CONNS] listen PORT MODE...     serve connections on PORT
//	vsockt connect CID PORT MODE...           one connection to CID:PORT
//
// Modes, the same on both sides:
//
//	echo             copy what arrives back until EOF
//	echo N           (connect) send N random bytes, read them back, compare
//	sink [LIMIT]     read until EOF, or close after LIMIT bytes
//	source N         send N random bytes, then close
//
// Every connection ends with one line on stdout:
//
//	EMBER-GUEST: vsockt <mode> <port> <conn> bytes <n> sha256 <hex> ok|err <reason>
//
// where the checksum covers what the tool received (sink, echo) or sent
// (source). listen serves connections concurrently, forever or until CONNS
// have ended; it prints "EMBER-GUEST: vsockt listening <port>" once bound.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

func main() {
	conns := flag.Int("n", 0, "listen: exit after this many connections (0: serve forever)")
	flag.Usage = usage
	flag.Parse()
	if err := run(flag.Args(), *conns); err != nil {
		fmt.Fprintln(os.Stderr, "vsockt:", err)
		os.Exit(2)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: vsockt [-n CONNS] listen PORT MODE... | vsockt connect CID PORT MODE...")
	fmt.Fprintln(os.Stderr, "modes: echo [N] | sink [LIMIT] | source N")
	os.Exit(2)
}

// mode is what to do with one connection.
type mode struct {
	name string
	n    int64 // echo (connect) and source: bytes to send; sink: limit (0: none)
}

func parseMode(args []string, client bool) (mode, error) {
	if len(args) == 0 {
		return mode{}, errors.New("no mode")
	}
	m := mode{name: args[0]}
	var err error
	num := func(what string, need bool) error {
		switch {
		case len(args) == 1 && !need:
			return nil
		case len(args) != 2:
			return fmt.Errorf("%s wants %s", m.name, what)
		}
		m.n, err = strconv.ParseInt(args[1], 0, 64)
		if err != nil || m.n < 0 {
			return fmt.Errorf("%s: bad %s %q", m.name, what, args[1])
		}
		return nil
	}
	switch m.name {
	case "echo":
		return m, num("a byte count", client)
	case "sink":
		return m, num("a limit", false)
	case "source":
		return m, num("a byte count", true)
	}
	return m, fmt.Errorf("unknown mode %q", m.name)
}

func parsePort(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return 0, fmt.Errorf("bad port or CID %q", s)
	}
	return uint32(v), nil
}

func run(args []string, conns int) error {
	if len(args) < 1 {
		usage()
	}
	switch args[0] {
	case "listen":
		if len(args) < 3 {
			usage()
		}
		port, err := parsePort(args[1])
		if err != nil {
			return err
		}
		m, err := parseMode(args[2:], false)
		if err != nil {
			return err
		}
		return listen(port, m, conns)
	case "connect":
		if len(args) < 4 {
			usage()
		}
		cid, err := parsePort(args[1])
		if err != nil {
			return err
		}
		port, err := parsePort(args[2])
		if err != nil {
			return err
		}
		m, err := parseMode(args[3:], true)
		if err != nil {
			return err
		}
		f, err := dial(cid, port)
		if err != nil {
			report(m, port, 0, 0, nil, err)
			return nil
		}
		serve(f, m, port, 0)
		return nil
	}
	usage()
	return nil
}

func listen(port uint32, m mode, conns int) error {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port}); err != nil {
		return fmt.Errorf("bind port %d: %w", port, err)
	}
	if err := unix.Listen(fd, 128); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	fmt.Printf("EMBER-GUEST: vsockt listening %d\n", port)
	var wg sync.WaitGroup
	for i := 1; conns == 0 || i <= conns; i++ {
		nfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
		if err == unix.EINTR || err == unix.ECONNABORTED {
			i--
			continue
		}
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			serve(os.NewFile(uintptr(nfd), "vsock"), m, port, i)
		}()
	}
	wg.Wait()
	return nil
}

func dial(cid, port uint32) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	for {
		err = unix.Connect(fd, &unix.SockaddrVM{CID: cid, Port: port})
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("connect %d:%d: %w", cid, port, err)
	}
	return os.NewFile(uintptr(fd), "vsock"), nil
}

// serve runs one connection in mode m and reports it.
func serve(f *os.File, m mode, port uint32, conn int) {
	defer f.Close()
	h := sha256.New()
	var n int64
	var err error
	switch {
	case m.name == "sink":
		var r io.Reader = f
		if m.n > 0 {
			r = io.LimitReader(f, m.n)
		}
		n, err = io.Copy(h, r)
	case m.name == "source":
		n, err = io.Copy(io.MultiWriter(f, h), io.LimitReader(newRandom(), m.n))
	case m.name == "echo" && m.n == 0:
		n, err = io.Copy(io.MultiWriter(f, h), f)
	default: // echo N: send and read back at once, then compare
		n, err = echoCheck(f, h, m.n)
	}
	report(m, port, conn, n, h, err)
}

// echoCheck sends n random bytes on f while reading them back.
func echoCheck(f *os.File, h hash.Hash, n int64) (int64, error) {
	sent := sha256.New()
	werr := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.MultiWriter(f, sent), io.LimitReader(newRandom(), n))
		werr <- err
	}()
	got, err := io.Copy(h, io.LimitReader(f, n))
	if e := <-werr; e != nil && err == nil {
		err = e
	}
	if err == nil && got != n {
		err = fmt.Errorf("short echo: %d of %d bytes", got, n)
	}
	if err == nil && string(sent.Sum(nil)) != string(h.Sum(nil)) {
		err = errors.New("echo differs from what was sent")
	}
	return got, err
}

func report(m mode, port uint32, conn int, n int64, h hash.Hash, err error) {
	sum := "-"
	if h != nil {
		sum = hex.EncodeToString(h.Sum(nil))
	}
	status := "ok"
	if err != nil {
		status = "err " + err.Error()
	}
	fmt.Printf("EMBER-GUEST: vsockt %s %d %d bytes %d sha256 %s %s\n", m.name, port, conn, n, sum, status)
}

// random is an endless stream of pseudo-random bytes: incompressible,
// cheap to make and different on every run.
type random struct{ r *rand.ChaCha8 }

func newRandom() io.Reader {
	var seed [32]byte
	unix.Getrandom(seed[:], 0)
	return random{rand.NewChaCha8(seed)}
}

func (r random) Read(p []byte) (int, error) { return r.r.Read(p) }
