package vhostuser

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Request is a front-end request code (the vhost-user specification's
// "Front-end message types").
type Request uint32

// The requests ember knows. Those it does not implement are refused with
// ErrUnknownRequest.
const (
	ReqGetFeatures         Request = 1
	ReqSetFeatures         Request = 2
	ReqSetOwner            Request = 3
	ReqResetOwner          Request = 4
	ReqSetMemTable         Request = 5
	ReqSetLogBase          Request = 6
	ReqSetLogFd            Request = 7
	ReqSetVringNum         Request = 8
	ReqSetVringAddr        Request = 9
	ReqSetVringBase        Request = 10
	ReqGetVringBase        Request = 11
	ReqSetVringKick        Request = 12
	ReqSetVringCall        Request = 13
	ReqSetVringErr         Request = 14
	ReqGetProtocolFeatures Request = 15
	ReqSetProtocolFeatures Request = 16
	ReqGetQueueNum         Request = 17
	ReqSetVringEnable      Request = 18
	ReqSendRARP            Request = 19
	ReqNetSetMTU           Request = 20
	ReqSetBackendReqFd     Request = 21
	ReqIOTLBMsg            Request = 22
	ReqSetVringEndian      Request = 23
	ReqGetConfig           Request = 24
	ReqSetConfig           Request = 25
	ReqResetDevice         Request = 34
	ReqSetStatus           Request = 39
	ReqGetStatus           Request = 40
)

var requestNames = map[Request]string{
	ReqGetFeatures: "GET_FEATURES", ReqSetFeatures: "SET_FEATURES", ReqSetOwner: "SET_OWNER",
	ReqResetOwner: "RESET_OWNER", ReqSetMemTable: "SET_MEM_TABLE", ReqSetLogBase: "SET_LOG_BASE",
	ReqSetLogFd: "SET_LOG_FD", ReqSetVringNum: "SET_VRING_NUM", ReqSetVringAddr: "SET_VRING_ADDR",
	ReqSetVringBase: "SET_VRING_BASE", ReqGetVringBase: "GET_VRING_BASE", ReqSetVringKick: "SET_VRING_KICK",
	ReqSetVringCall: "SET_VRING_CALL", ReqSetVringErr: "SET_VRING_ERR",
	ReqGetProtocolFeatures: "GET_PROTOCOL_FEATURES", ReqSetProtocolFeatures: "SET_PROTOCOL_FEATURES",
	ReqGetQueueNum: "GET_QUEUE_NUM", ReqSetVringEnable: "SET_VRING_ENABLE", ReqSendRARP: "SEND_RARP",
	ReqNetSetMTU: "NET_SET_MTU", ReqSetBackendReqFd: "SET_BACKEND_REQ_FD", ReqIOTLBMsg: "IOTLB_MSG",
	ReqSetVringEndian: "SET_VRING_ENDIAN", ReqGetConfig: "GET_CONFIG", ReqSetConfig: "SET_CONFIG",
	ReqResetDevice: "RESET_DEVICE", ReqSetStatus: "SET_STATUS", ReqGetStatus: "GET_STATUS",
}

// String names the request as the specification does.
func (r Request) String() string {
	if n, ok := requestNames[r]; ok {
		return n
	}
	return fmt.Sprintf("Request(%d)", uint32(r))
}

// Backend-to-front-end requests, on the channel SET_BACKEND_REQ_FD opens.
const backendConfigChange uint32 = 2 // VHOST_USER_BACKEND_CONFIG_CHANGE_MSG

// Header flags.
const (
	flagVersionMask = 0x3
	version         = 0x1
	flagReply       = 1 << 2
	flagNeedReply   = 1 << 3
)

// FeatureProtocolFeatures is the virtio feature bit through which a
// vhost-user back-end announces protocol feature negotiation
// (VHOST_USER_F_PROTOCOL_FEATURES). It is a transport bit, never passed to
// the device.
const FeatureProtocolFeatures = 30

// FeatureLogAll is VHOST_F_LOG_ALL, the transport bit by which a back-end
// says it can log its writes to guest memory for a migration. QEMU refuses
// to migrate a VM whose vhost-user device lacks it or the LOG_SHMFD
// protocol feature. ember offers both without keeping a log: it migrates
// a VM only with guest RAM shared and left out of QEMU's stream
// (x-ignore-shared), so no dirty log is ever read, and only while the VM
// is paused, when QEMU has stopped the device's queues.
const FeatureLogAll = 26

// transportFeatures are the feature bits between front-end and back-end
// that the device model never sees.
const transportFeatures = 1<<FeatureProtocolFeatures | 1<<FeatureLogAll

// Protocol feature bits.
const (
	ProtoMQ          = 0
	ProtoLogShmfd    = 1
	ProtoReplyAck    = 3
	ProtoBackendReq  = 5
	ProtoConfig      = 9
	ProtoResetDevice = 13
	ProtoStatus      = 16
)

// offeredProtocol is every protocol feature ember implements.
const offeredProtocol = 1<<ProtoMQ | 1<<ProtoLogShmfd | 1<<ProtoReplyAck | 1<<ProtoBackendReq |
	1<<ProtoConfig | 1<<ProtoResetDevice | 1<<ProtoStatus

// Limits.
const (
	headerSize = 12
	// MaxPayload bounds a message body. The largest message ember accepts
	// (GET_CONFIG with a 256-byte config space) needs 268 bytes.
	MaxPayload = 4096
	// MaxFds is the most file descriptors one message may carry, as QEMU
	// sends at most one per memory region (VHOST_MEMORY_BASELINE_NREGIONS).
	MaxFds = 8
	// MaxRegions bounds SET_MEM_TABLE.
	MaxRegions = 8
	// MaxConfigSize bounds GET_CONFIG and SET_CONFIG (VHOST_USER_MAX_CONFIG_SIZE).
	MaxConfigSize = 256
	// MaxQueues bounds the queue indexes a front-end may name.
	MaxQueues = 64

	memRegionSize  = 32
	vringAddrSize  = 40
	vringStateSize = 8
	logBaseSize    = 16 // mmap_size, mmap_offset
	configHdrSize  = 12
	vringIndexMask = 0xff
	vringNoFd      = 1 << 8 // VHOST_USER_VRING_NOFD_MASK
)

// Errors. Every failure to decode or handle a message wraps one of these.
var (
	// ErrMalformed marks a message whose framing or body is invalid.
	ErrMalformed = errors.New("vhost-user: malformed message")
	// ErrUnknownRequest marks a request ember does not implement.
	ErrUnknownRequest = errors.New("vhost-user: unsupported request")
	// ErrProtocol marks a valid message that breaks the protocol's state
	// (a vring before the memory table, features never offered, ...).
	ErrProtocol = errors.New("vhost-user: protocol violation")
	// ErrUnsupported marks something the protocol allows that ember cannot
	// do yet.
	ErrUnsupported = errors.New("vhost-user: not supported")
)

// header is the fixed message header.
type header struct {
	Request Request
	Flags   uint32
	Size    uint32
}

func parseHeader(b []byte) (header, error) {
	if len(b) < headerSize {
		return header{}, fmt.Errorf("%w: %d-byte header", ErrMalformed, len(b))
	}
	h := header{
		Request: Request(binary.LittleEndian.Uint32(b[0:])),
		Flags:   binary.LittleEndian.Uint32(b[4:]),
		Size:    binary.LittleEndian.Uint32(b[8:]),
	}
	if h.Flags&flagVersionMask != version {
		return h, fmt.Errorf("%w: %v: version %d", ErrMalformed, h.Request, h.Flags&flagVersionMask)
	}
	if h.Flags&flagReply != 0 {
		return h, fmt.Errorf("%w: %v: a reply where a request was expected", ErrMalformed, h.Request)
	}
	if h.Size > MaxPayload {
		return h, fmt.Errorf("%w: %v: %d-byte payload (at most %d)", ErrMalformed, h.Request, h.Size, MaxPayload)
	}
	return h, nil
}

func (h header) needReply() bool { return h.Flags&flagNeedReply != 0 }

// memRegion is one entry of SET_MEM_TABLE.
type memRegion struct {
	GPA, Size, UserAddr, MmapOffset uint64
}

// vringAddr is SET_VRING_ADDR's body; the addresses are the front-end's
// own virtual addresses.
type vringAddr struct {
	Index             uint32
	Flags             uint32
	Desc, Used, Avail uint64
	Log               uint64
}

// config is GET_CONFIG and SET_CONFIG's body.
type config struct {
	Offset, Size, Flags uint32
	Data                []byte
}

// message is a decoded request. Exactly the fields its request uses are set.
type message struct {
	header
	U64     uint64      // features, status, the kick/call/err index word
	State   [2]uint32   // vring state: index, num
	Regions []memRegion // SET_MEM_TABLE
	Addr    vringAddr   // SET_VRING_ADDR
	Config  config      // GET_CONFIG, SET_CONFIG
	NFds    int
}

// body kinds, per request: how long its body must be and how many fds.
type shape struct {
	size int // exact body size; -1: checked by the decoder
	fds  int // exact fd count; -1: checked by the decoder
}

func shapeOf(r Request) (shape, bool) {
	switch r {
	case ReqGetFeatures, ReqGetProtocolFeatures, ReqGetQueueNum, ReqGetStatus,
		ReqSetOwner, ReqResetOwner, ReqResetDevice:
		return shape{size: 0}, true
	case ReqSetFeatures, ReqSetProtocolFeatures, ReqSetStatus:
		return shape{size: 8}, true
	case ReqSetVringNum, ReqSetVringBase, ReqGetVringBase, ReqSetVringEnable:
		return shape{size: vringStateSize}, true
	case ReqSetVringAddr:
		return shape{size: vringAddrSize}, true
	case ReqSetVringKick, ReqSetVringCall, ReqSetVringErr:
		return shape{size: 8, fds: -1}, true
	case ReqSetMemTable:
		return shape{size: -1, fds: -1}, true
	case ReqGetConfig, ReqSetConfig:
		return shape{size: -1}, true
	case ReqSetBackendReqFd:
		return shape{size: 0, fds: 1}, true
	case ReqSetLogBase:
		// The log's shared memory (LOG_SHMFD).
		return shape{size: logBaseSize, fds: 1}, true
	}
	return shape{}, false
}

// decode parses a request's body. nfds is how many file descriptors came
// with it; their use is checked here, never their values.
func decode(h header, body []byte, nfds int) (message, error) {
	m := message{header: h, NFds: nfds}
	if len(body) != int(h.Size) {
		return m, fmt.Errorf("%w: %v: %d body bytes for size %d", ErrMalformed, h.Request, len(body), h.Size)
	}
	sh, ok := shapeOf(h.Request)
	if !ok {
		return m, fmt.Errorf("%w: %v", ErrUnknownRequest, h.Request)
	}
	bad := func(format string, args ...any) (message, error) {
		return m, fmt.Errorf("%w: %v: "+format, append([]any{ErrMalformed, h.Request}, args...)...)
	}
	if sh.size >= 0 && len(body) != sh.size {
		return bad("%d-byte body, want %d", len(body), sh.size)
	}
	if sh.fds >= 0 && nfds != sh.fds {
		return bad("%d file descriptors, want %d", nfds, sh.fds)
	}
	le := binary.LittleEndian
	switch h.Request {
	case ReqSetFeatures, ReqSetProtocolFeatures, ReqSetStatus:
		m.U64 = le.Uint64(body)
	case ReqSetLogBase:
		m.U64 = le.Uint64(body) // the log's size
	case ReqSetVringNum, ReqSetVringBase, ReqGetVringBase, ReqSetVringEnable:
		m.State = [2]uint32{le.Uint32(body), le.Uint32(body[4:])}
		if m.State[0] >= MaxQueues {
			return bad("queue index %d", m.State[0])
		}
	case ReqSetVringAddr:
		m.Addr = vringAddr{
			Index: le.Uint32(body), Flags: le.Uint32(body[4:]),
			Desc: le.Uint64(body[8:]), Used: le.Uint64(body[16:]),
			Avail: le.Uint64(body[24:]), Log: le.Uint64(body[32:]),
		}
		if m.Addr.Index >= MaxQueues {
			return bad("queue index %d", m.Addr.Index)
		}
	case ReqSetVringKick, ReqSetVringCall, ReqSetVringErr:
		m.U64 = le.Uint64(body)
		if m.U64&^uint64(vringIndexMask|vringNoFd) != 0 {
			return bad("unknown bits in %#x", m.U64)
		}
		if m.U64&vringIndexMask >= MaxQueues {
			return bad("queue index %d", m.U64&vringIndexMask)
		}
		want := 1
		if m.U64&vringNoFd != 0 {
			want = 0
		}
		if nfds != want {
			return bad("%d file descriptors with flags %#x", nfds, m.U64)
		}
	case ReqSetMemTable:
		if len(body) < 8 {
			return bad("%d-byte body", len(body))
		}
		n := le.Uint32(body)
		if n == 0 || n > MaxRegions {
			return bad("%d regions", n)
		}
		if len(body) != 8+int(n)*memRegionSize {
			return bad("%d-byte body for %d regions", len(body), n)
		}
		if nfds != int(n) {
			return bad("%d file descriptors for %d regions", nfds, n)
		}
		for i := range int(n) {
			b := body[8+i*memRegionSize:]
			r := memRegion{GPA: le.Uint64(b), Size: le.Uint64(b[8:]), UserAddr: le.Uint64(b[16:]), MmapOffset: le.Uint64(b[24:])}
			if r.Size == 0 || r.GPA+r.Size < r.GPA || r.UserAddr+r.Size < r.UserAddr || r.MmapOffset+r.Size < r.MmapOffset {
				return bad("region %d: %#x+%#x at user %#x, offset %#x", i, r.GPA, r.Size, r.UserAddr, r.MmapOffset)
			}
			m.Regions = append(m.Regions, r)
		}
	case ReqGetConfig, ReqSetConfig:
		if len(body) < configHdrSize {
			return bad("%d-byte body", len(body))
		}
		m.Config = config{Offset: le.Uint32(body), Size: le.Uint32(body[4:]), Flags: le.Uint32(body[8:])}
		if m.Config.Size > MaxConfigSize || m.Config.Offset > MaxConfigSize-m.Config.Size {
			return bad("config range %d+%d", m.Config.Offset, m.Config.Size)
		}
		if len(body) != configHdrSize+int(m.Config.Size) {
			return bad("%d-byte body for %d config bytes", len(body), m.Config.Size)
		}
		m.Config.Data = body[configHdrSize:]
	}
	return m, nil
}

// encodeReply builds a reply to h with body.
func encodeReply(r Request, body []byte) []byte {
	b := make([]byte, headerSize+len(body))
	binary.LittleEndian.PutUint32(b[0:], uint32(r))
	binary.LittleEndian.PutUint32(b[4:], version|flagReply)
	binary.LittleEndian.PutUint32(b[8:], uint32(len(body)))
	copy(b[headerSize:], body)
	return b
}

func u64Body(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

func stateBody(index, num uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, index)
	return binary.LittleEndian.AppendUint32(b, num)
}

func configBody(c config, data []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, c.Offset)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	b = binary.LittleEndian.AppendUint32(b, c.Flags)
	return append(b, data...)
}
