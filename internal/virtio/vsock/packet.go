package vsock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/ember-vmm/ember/internal/virtio"
)

// Operations (virtio 1.2 §5.10.6, VIRTIO_VSOCK_OP_*).
const (
	OpRequest       uint16 = 1
	OpResponse      uint16 = 2
	OpRst           uint16 = 3
	OpShutdown      uint16 = 4
	OpRW            uint16 = 5
	OpCreditUpdate  uint16 = 6
	OpCreditRequest uint16 = 7
)

// Shutdown flags.
const (
	ShutdownRcv  uint32 = 1
	ShutdownSend uint32 = 2
)

// TypeStream is the only socket type ember's vsock carries, as Firecracker.
const TypeStream uint16 = 1

// HostCID is the host's vsock address.
const HostCID uint64 = 2

// HeaderSize is the length of struct virtio_vsock_hdr.
const HeaderSize = 44

// MaxPacketBuf bounds the payload of one packet in either direction.
const MaxPacketBuf = 64 * 1024

// Errors classifying packets the guest gets wrong. The device drops such a
// packet, returning its buffers to the guest, as Firecracker does; none of
// them breaks the queue.
var (
	ErrBadPacket = errors.New("malformed vsock packet")
)

// Header is struct virtio_vsock_hdr, little endian and packed.
type Header struct {
	SrcCID   uint64
	DstCID   uint64
	SrcPort  uint32
	DstPort  uint32
	Len      uint32
	Type     uint16
	Op       uint16
	Flags    uint32
	BufAlloc uint32
	FwdCnt   uint32
}

// Marshal encodes h into b[:HeaderSize].
func (h *Header) Marshal(b []byte) {
	_ = b[HeaderSize-1]
	binary.LittleEndian.PutUint64(b[0:], h.SrcCID)
	binary.LittleEndian.PutUint64(b[8:], h.DstCID)
	binary.LittleEndian.PutUint32(b[16:], h.SrcPort)
	binary.LittleEndian.PutUint32(b[20:], h.DstPort)
	binary.LittleEndian.PutUint32(b[24:], h.Len)
	binary.LittleEndian.PutUint16(b[28:], h.Type)
	binary.LittleEndian.PutUint16(b[30:], h.Op)
	binary.LittleEndian.PutUint32(b[32:], h.Flags)
	binary.LittleEndian.PutUint32(b[36:], h.BufAlloc)
	binary.LittleEndian.PutUint32(b[40:], h.FwdCnt)
}

// Unmarshal decodes b[:HeaderSize] into h.
func (h *Header) Unmarshal(b []byte) {
	_ = b[HeaderSize-1]
	h.SrcCID = binary.LittleEndian.Uint64(b[0:])
	h.DstCID = binary.LittleEndian.Uint64(b[8:])
	h.SrcPort = binary.LittleEndian.Uint32(b[16:])
	h.DstPort = binary.LittleEndian.Uint32(b[20:])
	h.Len = binary.LittleEndian.Uint32(b[24:])
	h.Type = binary.LittleEndian.Uint16(b[28:])
	h.Op = binary.LittleEndian.Uint16(b[30:])
	h.Flags = binary.LittleEndian.Uint32(b[32:])
	h.BufAlloc = binary.LittleEndian.Uint32(b[36:])
	h.FwdCnt = binary.LittleEndian.Uint32(b[40:])
}

func (h *Header) String() string {
	return fmt.Sprintf("{src_cid: %d, dst_cid: %d, src_port: %d, dst_port: %d, len: %d, type_: %d, op: %d, flags: %d, buf_alloc: %d, fwd_cnt: %d}",
		h.SrcCID, h.DstCID, h.SrcPort, h.DstPort, h.Len, h.Type, h.Op, h.Flags, h.BufAlloc, h.FwdCnt)
}

// txPacket is a packet the guest sent: its header copied out of guest
// memory, and the chain whose device-readable buffers hold header and
// payload.
type txPacket struct {
	hdr   Header
	chain *virtio.Chain
	// bufSize is the room after the header (Firecracker's buf_size), which
	// may exceed hdr.Len.
	bufSize uint32
}

// parseTx checks a TX chain as Firecracker does: every buffer readable, room
// for a header, a length within MaxPacketBuf and within the chain.
func parseTx(c *virtio.Chain, p *txPacket) error {
	switch {
	case c.InLen > 0:
		return fmt.Errorf("%w: UnreadableDescriptor", ErrBadPacket)
	case c.OutLen > math.MaxUint32:
		return fmt.Errorf("%w: DescChainOverflow", ErrBadPacket)
	case c.OutLen < HeaderSize:
		return fmt.Errorf("%w: DescChainTooShortForHeader(%d)", ErrBadPacket, c.OutLen)
	}
	var b [HeaderSize]byte
	c.ReadOut(b[:], 0)
	p.hdr.Unmarshal(b[:])
	p.chain = c
	p.bufSize = uint32(c.OutLen) - HeaderSize
	if p.hdr.Len > MaxPacketBuf {
		return fmt.Errorf("%w: InvalidPktLen(%d)", ErrBadPacket, p.hdr.Len)
	}
	if p.hdr.Len > p.bufSize {
		return fmt.Errorf("%w: DescChainTooShortForPacket(%d, %d)", ErrBadPacket, c.OutLen, p.hdr.Len)
	}
	return nil
}

// payload returns the guest-memory pieces holding n payload bytes from off.
func (p *txPacket) payload(off, n uint32, dst [][]byte) [][]byte {
	return virtio.Range(p.chain.Out, HeaderSize+uint64(off), uint64(n), dst)
}

// rxPacket is a packet being built for the guest in an RX chain.
type rxPacket struct {
	hdr     Header
	chain   *virtio.Chain
	bufSize uint32
}

// parseRx checks an RX chain: every buffer writable and room for a header.
func parseRx(c *virtio.Chain, p *rxPacket) error {
	switch {
	case c.OutLen > 0:
		return fmt.Errorf("%w: UnwritableDescriptor", ErrBadPacket)
	case c.InLen > math.MaxUint32:
		return fmt.Errorf("%w: DescChainOverflow", ErrBadPacket)
	case c.InLen < HeaderSize:
		return fmt.Errorf("%w: DescChainTooShortForHeader(%d)", ErrBadPacket, c.InLen)
	}
	p.hdr = Header{}
	p.chain = c
	p.bufSize = uint32(c.InLen) - HeaderSize
	return nil
}

// payload returns the guest-memory pieces for n payload bytes.
func (p *rxPacket) payload(n uint32, dst [][]byte) [][]byte {
	return virtio.Range(p.chain.In, HeaderSize, uint64(n), dst)
}

// commit writes the header into the chain.
func (p *rxPacket) commit() error {
	if p.hdr.Len > MaxPacketBuf {
		return fmt.Errorf("%w: InvalidPktLen(%d)", ErrBadPacket, p.hdr.Len)
	}
	var b [HeaderSize]byte
	p.hdr.Marshal(b[:])
	p.chain.WriteIn(b[:], 0)
	return nil
}
