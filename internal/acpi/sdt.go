package acpi

import (
	"encoding/binary"
)

// Ember's identifiers in every table header.
const (
	OEMID           = "EMBER "
	CreatorID       = "EMBR"
	CreatorRevision = 1
	OEMRevision     = 0
)

// headerSize is the size of a system description table header.
const headerSize = 36

// Table is one ACPI table as it lies in guest memory.
type Table struct {
	Signature string
	Addr      uint64
	Data      []byte
}

// newSDT returns a table with its header filled in (length and checksum
// are set by finish) followed by body.
func newSDT(sig string, revision byte, tableID string, body []byte) []byte {
	b := make([]byte, headerSize, headerSize+len(body))
	copy(b[0:4], sig)
	b[8] = revision
	copy(b[10:16], OEMID)
	copy(b[16:24], tableID+"        ")
	binary.LittleEndian.PutUint32(b[24:], OEMRevision)
	copy(b[28:32], CreatorID)
	binary.LittleEndian.PutUint32(b[32:], CreatorRevision)
	return append(b, body...)
}

// finish sets a table's length and checksum.
func finish(b []byte) []byte {
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)))
	b[9] = 0
	b[9] = checksum(b)
	return b
}

// checksum returns the byte that makes b sum to zero when it replaces a
// zero checksum byte.
func checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}

// rsdp returns the ACPI 2.0 root pointer to the XSDT at xsdt.
func rsdp(xsdt uint64) []byte {
	b := make([]byte, 36)
	copy(b, "RSD PTR ")
	copy(b[9:15], OEMID)
	b[15] = 2 // revision: ACPI 2.0+, XSDT in use
	binary.LittleEndian.PutUint32(b[20:], uint32(len(b)))
	binary.LittleEndian.PutUint64(b[24:], xsdt)
	b[8] = checksum(b[:20])
	b[32] = checksum(b)
	return b
}

// xsdt returns the extended system description table listing tables.
func xsdt(tables ...uint64) []byte {
	body := make([]byte, 0, 8*len(tables))
	for _, t := range tables {
		body = binary.LittleEndian.AppendUint64(body, t)
	}
	return finish(newSDT("XSDT", 1, "EMBRXSDT", body))
}
