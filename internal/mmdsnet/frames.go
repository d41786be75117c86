package mmdsnet

import (
	"encoding/binary"
	"errors"
)

// Frame layout constants (Ethernet II without 802.1Q tags, ARP for IPv4
// over Ethernet, IPv4 and TCP).
const (
	ethHeaderLen  = 14
	etherTypeARP  = 0x0806
	etherTypeIPv4 = 0x0800

	arpFrameLen   = 28
	arpHTypeEther = 1
	arpOpRequest  = 1
	arpOpReply    = 2

	ipv4MinHeaderLen = 20
	ipv4DefaultTTL   = 1 // what Firecracker puts in every packet it sends
	protoTCP         = 6

	tcpMinHeaderLen = 20
	tcpMaxHeaderLen = 60
	tcpOptEOL       = 0
	tcpOptNOP       = 1
	tcpOptMSS       = 2
	tcpOptMSSLen    = 4
	mssMin          = 100
	// maxSegmentLen bounds a segment by the IPv4 total length field.
	maxSegmentLen = 0xffff - ipv4MinHeaderLen
	mssMax        = maxSegmentLen - tcpMinHeaderLen
)

// TCP flags (the byte after the NS bit).
const (
	flagFIN = 1 << 0
	flagSYN = 1 << 1
	flagRST = 1 << 2
	flagPSH = 1 << 3
	flagACK = 1 << 4
)

// Parse and write errors; none leaves this package except through
// counters.
var (
	errSliceTooShort = errors.New("slice too short")
	errHeaderLen     = errors.New("invalid header length")
	errTotalLen      = errors.New("invalid total length")
	errVersion       = errors.New("invalid IP version")
	errMSSOption     = errors.New("invalid MSS option")
	errMSSRemaining  = errors.New("no room left for the MSS option")
	errEmptyPayload  = errors.New("no room for a payload")
	errInvalidPort   = errors.New("invalid destination port")
	errARP           = errors.New("not an IPv4-over-Ethernet ARP request")
)

// checksum is the Internet checksum over b, starting from sum.
func checksum(sum uint32, b []byte) uint16 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// pseudoSum is the TCP pseudo-header's contribution to the checksum.
func pseudoSum(src, dst [4]byte, length int) uint32 {
	return uint32(binary.BigEndian.Uint16(src[:])) + uint32(binary.BigEndian.Uint16(src[2:])) +
		uint32(binary.BigEndian.Uint16(dst[:])) + uint32(binary.BigEndian.Uint16(dst[2:])) +
		protoTCP + uint32(length)
}

// arpRequest is a parsed ARP request: the sender's addresses.
type arpRequest struct {
	sha [6]byte
	spa [4]byte
}

// parseARPRequest accepts exactly a 28-byte IPv4-over-Ethernet request, as
// Firecracker does (a padded frame is not one).
func parseARPRequest(b []byte) (arpRequest, error) {
	var r arpRequest
	if len(b) != arpFrameLen {
		return r, errARP
	}
	if binary.BigEndian.Uint16(b[0:]) != arpHTypeEther || binary.BigEndian.Uint16(b[2:]) != etherTypeIPv4 ||
		b[4] != 6 || b[5] != 4 || binary.BigEndian.Uint16(b[6:]) != arpOpRequest {
		return r, errARP
	}
	copy(r.sha[:], b[8:14])
	copy(r.spa[:], b[14:18])
	return r, nil
}

// writeEth writes an Ethernet header.
func writeEth(b []byte, dst, src [6]byte, etherType uint16) {
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	binary.BigEndian.PutUint16(b[12:], etherType)
}

// writeARPReply writes a 28-byte ARP reply.
func writeARPReply(b []byte, sha [6]byte, spa [4]byte, tha [6]byte, tpa [4]byte) {
	binary.BigEndian.PutUint16(b[0:], arpHTypeEther)
	binary.BigEndian.PutUint16(b[2:], etherTypeIPv4)
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], arpOpReply)
	copy(b[8:14], sha[:])
	copy(b[14:18], spa[:])
	copy(b[18:24], tha[:])
	copy(b[24:28], tpa[:])
}

// ipv4 is a validated IPv4 packet.
type ipv4 struct {
	b    []byte
	hlen int
}

// parseIPv4 checks what Firecracker checks: version 4, a header of at
// least 20 bytes, and a total length equal to the slice's. The header
// checksum is not verified (guests may leave it to offloads).
func parseIPv4(b []byte) (ipv4, error) {
	if len(b) < ipv4MinHeaderLen {
		return ipv4{}, errSliceTooShort
	}
	if b[0]>>4 != 4 {
		return ipv4{}, errVersion
	}
	hlen := int(b[0]&0xf) * 4
	total := int(binary.BigEndian.Uint16(b[2:]))
	if total < hlen || total != len(b) {
		return ipv4{}, errTotalLen
	}
	if hlen < ipv4MinHeaderLen {
		return ipv4{}, errHeaderLen
	}
	return ipv4{b: b, hlen: hlen}, nil
}

func (p ipv4) protocol() uint8  { return p.b[9] }
func (p ipv4) src() (a [4]byte) { copy(a[:], p.b[12:16]); return a }
func (p ipv4) payload() []byte  { return p.b[p.hlen:] }

// writeIPv4 writes a 20-byte header for a TCP payload of n bytes, checksum
// included.
func writeIPv4(b []byte, src, dst [4]byte, n int) {
	b[0] = 0x45
	b[1] = 0
	binary.BigEndian.PutUint16(b[2:], uint16(ipv4MinHeaderLen+n))
	binary.BigEndian.PutUint32(b[4:], 0) // identification, flags, fragment offset
	b[8] = ipv4DefaultTTL
	b[9] = protoTCP
	b[10], b[11] = 0, 0
	copy(b[12:16], src[:])
	copy(b[16:20], dst[:])
	binary.BigEndian.PutUint16(b[10:], checksum(0, b[:ipv4MinHeaderLen]))
}

// segment is a TCP segment whose header length has been checked.
type segment struct {
	b    []byte
	hlen int
}

// parseSegment checks the header length only; the checksum is not
// verified, as in Firecracker.
func parseSegment(b []byte) (segment, error) {
	if len(b) < tcpMinHeaderLen {
		return segment{}, errSliceTooShort
	}
	hlen := int(b[12]>>4) * 4
	if hlen < tcpMinHeaderLen || hlen > min(tcpMaxHeaderLen, len(b)) {
		return segment{}, errHeaderLen
	}
	return segment{b: b, hlen: hlen}, nil
}

func (s segment) srcPort() uint16  { return binary.BigEndian.Uint16(s.b[0:]) }
func (s segment) dstPort() uint16  { return binary.BigEndian.Uint16(s.b[2:]) }
func (s segment) seq() uint32      { return binary.BigEndian.Uint32(s.b[4:]) }
func (s segment) ack() uint32      { return binary.BigEndian.Uint32(s.b[8:]) }
func (s segment) flags() uint8     { return s.b[13] }
func (s segment) window() uint16   { return binary.BigEndian.Uint16(s.b[14:]) }
func (s segment) payload() []byte  { return s.b[s.hlen:] }
func (s segment) payloadLen() int  { return len(s.b) - s.hlen }
func (s segment) has(f uint8) bool { return s.b[13]&f != 0 }

// mss returns the MSS option (0 when absent), scanning options as
// Firecracker does: EOL ends, NOP skips a byte, other options skip their
// length (at least 2), and an MSS outside [100, 65495] is an error.
func (s segment) mss() (uint16, error) {
	o := s.b[tcpMinHeaderLen:s.hlen]
	for i := 0; i+3 < len(o); {
		switch o[i] {
		case tcpOptEOL:
			return 0, nil
		case tcpOptNOP:
			i++
		case tcpOptMSS:
			v := binary.BigEndian.Uint16(o[i+2:])
			if v < mssMin || v > mssMax {
				return 0, errMSSOption
			}
			return v, nil
		default:
			l := int(o[i+1])
			if l < 2 {
				return 0, errMSSOption
			}
			i += l
		}
	}
	return 0, nil
}

// segmentHeader is what a connection decides about an outgoing segment;
// the handler adds ports and the checksum.
type segmentHeader struct {
	seq, ack uint32
	flags    uint8
	window   uint16
	mss      uint16 // 0: no MSS option
}

// writeSegment writes a segment without ports and checksum into b and
// returns its length. payload, if not nil, is copied as far as b, the MSS
// budget (mssLeft, less the option) and max allow; a payload that gets no
// room at all is an error.
func writeSegment(b []byte, h segmentHeader, mssLeft uint16, payload []byte, max int) (int, error) {
	hlen := tcpMinHeaderLen
	if h.mss != 0 {
		if mssLeft < tcpOptMSSLen {
			return 0, errMSSRemaining
		}
		mssLeft -= tcpOptMSSLen
		hlen += tcpOptMSSLen
	}
	if len(b) < hlen {
		return 0, errSliceTooShort
	}
	binary.BigEndian.PutUint32(b[4:], h.seq)
	binary.BigEndian.PutUint32(b[8:], h.ack)
	b[12] = byte(hlen/4) << 4
	b[13] = h.flags
	binary.BigEndian.PutUint16(b[14:], h.window)
	binary.BigEndian.PutUint16(b[18:], 0) // urgent pointer
	if h.mss != 0 {
		b[20], b[21] = tcpOptMSS, tcpOptMSSLen
		binary.BigEndian.PutUint16(b[22:], h.mss)
	}
	n := 0
	if payload != nil {
		room := min(min(len(b), 0xffff), maxSegmentLen) - hlen
		room = min(room, int(mssLeft), len(payload), max)
		if room <= 0 {
			return 0, errEmptyPayload
		}
		n = copy(b[hlen:hlen+room], payload)
	}
	return hlen + n, nil
}

// finalizeSegment sets the ports and the checksum of a written segment.
func finalizeSegment(b []byte, srcPort, dstPort uint16, src, dst [4]byte) {
	binary.BigEndian.PutUint16(b[0:], srcPort)
	binary.BigEndian.PutUint16(b[2:], dstPort)
	b[16], b[17] = 0, 0
	binary.BigEndian.PutUint16(b[16:], checksum(pseudoSum(src, dst, len(b)), b))
}
