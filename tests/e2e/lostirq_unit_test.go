package e2e

import (
	"encoding/binary"
	"strings"
	"testing"
)

func TestHeartbeatQuiet(t *testing.T) {
	beat := func(up, count string) string {
		return "EMBER-GUEST: alive " + up + "  24: " + count + " IO-APIC 5-edge virtio0|"
	}
	for _, tc := range []struct {
		name  string
		lines []string
		quiet bool
	}{
		{"frozen for 70 s", []string{beat("10.0", "5"), beat("20.0", "9"), beat("30.0", "9"), beat("100.0", "9")}, true},
		{"moved 10 s ago", []string{beat("10.0", "9"), beat("80.0", "9"), beat("90.0", "10")}, false},
		{"frozen for 50 s", []string{beat("10.0", "9"), beat("60.0", "9")}, false},
		{"one heartbeat", []string{beat("100.0", "9")}, false},
		{"other lines around", []string{"x", beat("10.0", "9"), "EMBER-GUEST: vsockt ...", beat("75.5", "9")}, true},
	} {
		if _, quiet := heartbeatQuiet(tc.lines); quiet != tc.quiet {
			t.Errorf("%s: quiet = %v, want %v", tc.name, quiet, tc.quiet)
		}
	}
}

func TestUntakenUsed(t *testing.T) {
	// One 4-entry queue: avail ring at 0x100, used ring at 0x200.
	mem := make([]byte, 0x300)
	set := func(usedEvent, usedIdx uint16) {
		binary.LittleEndian.PutUint16(mem[0x100+4+2*4:], usedEvent)
		binary.LittleEndian.PutUint16(mem[0x200+2:], usedIdx)
	}
	section := func(isr int) []byte {
		return []byte(strings.ReplaceAll(`{"transport":{"interrupt_status":ISR,"queues":[{"ready":true,"size":4,"avail_ring":256,"used_ring":512}]}}`, "ISR", string(rune('0'+isr))))
	}
	for _, tc := range []struct {
		name              string
		isr               int
		usedEvent, usedIx uint16
		want              bool
	}{
		{"raised, one past used_event", 1, 745, 746, true},
		{"raised, across the wrap", 1, 65535, 1, true},
		{"raised, guest caught up", 1, 746, 746, false},
		{"not raised", 0, 745, 746, false},
		{"callbacks off (used_event 0)", 1, 0, 746, false},
	} {
		set(tc.usedEvent, tc.usedIx)
		if got := untakenUsed(section(tc.isr), mem) != ""; got != tc.want {
			t.Errorf("%s: untaken = %v, want %v", tc.name, got, tc.want)
		}
	}
}
