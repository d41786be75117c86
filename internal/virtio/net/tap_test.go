package net

import (
	"encoding/binary"
	gonet "net"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ember-vmm/ember/internal/tap"
	"github.com/ember-vmm/ember/internal/virtio"
	vt "github.com/ember-vmm/ember/internal/virtio/virtiotest"
)

// inNetns runs fn on an OS thread moved into a new network namespace, so
// the tap it creates never touches the host's network. The thread exits
// with its goroutine, which destroys the namespace.
func inNetns(t *testing.T, fn func() error) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING real tap test: needs root to create a network namespace and a tap")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("SKIPPING real tap test: /dev/net/tun is missing: %v", err)
	}
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the namespace
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- err
			return
		}
		done <- fn()
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// ifUp gives the interface an address and brings it up, in the calling
// thread's namespace.
func ifUp(name string, addr, mask gonet.IP) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	for _, step := range []struct {
		req uint
		ip  gonet.IP
	}{{unix.SIOCSIFADDR, addr}, {unix.SIOCSIFNETMASK, mask}} {
		ifr, _ := unix.NewIfreq(name)
		if err := ifr.SetInet4Addr(step.ip.To4()); err != nil {
			return err
		}
		if err := unix.IoctlIfreq(s, step.req, ifr); err != nil {
			return err
		}
	}
	ifr, _ := unix.NewIfreq(name)
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr)
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// udpFrame builds vnet header + Ethernet + IPv4 + UDP (no checksum).
func udpFrame(dstMAC, srcMAC gonet.HardwareAddr, src, dst gonet.IP, dport uint16, payload []byte) []byte {
	f := make([]byte, VnetHdrSize+14+20+8+len(payload))
	e := f[VnetHdrSize:]
	copy(e[0:], dstMAC)
	copy(e[6:], srcMAC)
	binary.BigEndian.PutUint16(e[12:], 0x0800)
	ip := e[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	copy(ip[12:], src.To4())
	copy(ip[16:], dst.To4())
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip[:20]))
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:], 5555)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	copy(udp[8:], payload)
	return f
}

// TestRealTap sends a UDP datagram from the guest through a real tap to a
// host socket, and sees the host's ARP request for the guest arrive in the
// guest's RX buffers.
func TestRealTap(t *testing.T) {
	var (
		hostIP  = gonet.IPv4(10, 11, 12, 1)
		guestIP = gonet.IPv4(10, 11, 12, 2)
		mask    = gonet.IPv4(255, 255, 255, 0)
	)
	inNetns(t, func() error {
		f, err := tap.Open("embertap0")
		if err != nil {
			return err
		}
		if err := ifUp("embertap0", hostIP, mask); err != nil {
			f.Close()
			return err
		}
		ifi, err := gonet.InterfaceByName("embertap0")
		if err != nil {
			f.Close()
			return err
		}
		conn, err := gonet.ListenUDP("udp4", &gonet.UDPAddr{IP: hostIP, Port: 4444})
		if err != nil {
			f.Close()
			return err
		}
		defer conn.Close()

		mem := vt.NewMemory(t, memSize)
		alloc := vt.NewAllocator(0x1000, memSize)
		d, err := New(f, Config{MAC: mac}) // the real tap.SetOffload runs at activation
		if err != nil {
			return err
		}
		defer d.Close()
		rx, tx := vt.NewVQ(mem, alloc, 64), vt.NewVQ(mem, alloc, 64)
		qs := []*virtio.Queue{rx.Queue(256), tx.Queue(256)}
		features := virtio.Bit(FeatureMrgRxbuf) | virtio.Bit(FeatureGuestCsum)
		for _, q := range qs {
			if err := q.Activate(mem, false); err != nil {
				return err
			}
		}
		if err := d.Activate(virtio.Activation{Mem: mem, Queues: qs, Features: features, Transport: vt.NewTransport()}); err != nil {
			return err
		}
		for range 32 {
			rx.Add(vt.W(2048))
		}
		d.Notify(RxQueue)

		tx.Add(vt.R(udpFrame(ifi.HardwareAddr, mac, guestIP, hostIP, 4444, []byte("hello from the guest"))))
		d.Notify(TxQueue)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 100)
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			t.Errorf("host socket: %v", err)
		} else if string(buf[:n]) != "hello from the guest" || !from.IP.Equal(guestIP) {
			t.Errorf("host got %q from %v", buf[:n], from)
		}

		// Host to guest: the kernel resolves the guest's MAC first.
		if _, err := conn.WriteToUDP([]byte("hi"), &gonet.UDPAddr{IP: guestIP, Port: 5555}); err != nil {
			return err
		}
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			for _, u := range rx.TakeUsed() {
				fr := rx.Read(rx.Chains[uint16(u.ID)][0], int(u.Len))
				e := fr[VnetHdrSize:]
				if len(e) >= 42 && binary.BigEndian.Uint16(e[12:]) == 0x0806 && gonet.IP(e[38:42]).Equal(guestIP) {
					if s := d.Stats(); s.TxPackets != 1 || s.RxPackets == 0 {
						t.Errorf("stats %+v", s)
					}
					return nil
				}
			}
			time.Sleep(time.Millisecond)
		}
		t.Error("no ARP request for the guest arrived through the tap")
		return nil
	})
}
