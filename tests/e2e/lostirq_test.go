package e2e

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ember-vmm/ember/internal/kvm"
	"github.com/ember-vmm/ember/internal/kvmstate"
	"github.com/ember-vmm/ember/internal/nested"
	"github.com/ember-vmm/ember/internal/snapshot"
	"github.com/ember-vmm/ember/internal/virtio/mmio"
)

// The guest's heartbeat: its uptime and its virtio interrupt counts.
const (
	heartbeatTag    = "EMBER-GUEST: alive "
	heartbeatScript = `(while sleep 10; do echo "` + heartbeatTag +
		`$(cut -d' ' -f1 /proc/uptime) $(grep virtio /proc/interrupts | tr -s ' ' | tr '\n' '|')"; done) </dev/null &`
	// quietFor is how long the guest's virtio interrupt counts must have
	// stood still before a stall is put down to a lost interrupt.
	quietFor = 60.0 // seconds of guest uptime
)

// explainStall tells a stalled transfer on the kvm backend caused by the
// nested environment from one caused by ember. It reports a lost
// interrupt (nested.LostInterrupt, which fails t) when all of these hold:
//
//   - the guest's virtio interrupt counts have not moved for quietFor;
//   - a paused snapshot shows a virtio device that raised its interrupt
//     (interrupt status set) and published a used entry the guest asked to
//     be interrupted for (used.idx past used_event) that the guest has not
//     taken;
//   - a vCPU has interrupts enabled and a vector above its processor
//     priority waiting in its LAPIC's IRR.
//
// Then ember did its part and the hypervisor under it did not deliver: in
// L1, KVM on QEMU's emulated SVM (docs/reliability.md); ember is then
// stopped. Otherwise it only logs what it saw, and the caller fails the
// test as usual. The snapshot resets the VM's devices: call it only on
// the way to failing.
func explainStall(t *testing.T, e *ember) {
	t.Helper()
	if backendOf(t) != "kvm" {
		return
	}
	quiet, ok := heartbeatQuiet(e.Con.Lines())
	if !ok {
		t.Logf("stall: the guest's virtio interrupt counts moved within the last %.0f s (or too few heartbeats); not a lost interrupt", quietFor)
		return
	}
	dir := t.TempDir()
	state, mem := filepath.Join(dir, "stall.state"), filepath.Join(dir, "stall.mem")
	if code, body := e.api("PATCH", "/vm", map[string]string{"state": "Paused"}); code != 204 {
		t.Logf("stall: cannot pause for a look: %d %s", code, body)
		return
	}
	if code, body := e.api("PUT", "/snapshot/create", map[string]string{"snapshot_path": state, "mem_file_path": mem}); code != 204 {
		t.Logf("stall: cannot snapshot for a look: %d %s", code, body)
		return
	}
	evidence, err := lostInterruptIn(state, mem)
	if err != nil {
		t.Logf("stall: %v", err)
		return
	}
	if evidence == "" {
		t.Logf("stall: no interrupt waits undelivered; the guest's virtio interrupts were quiet for %s", quiet)
		return
	}
	nested.LostInterrupt(t, fmt.Sprintf("the guest took no virtio interrupt for %s; %s", quiet, evidence))
	// This VM is done for: the subtests after this one fail fast.
	e.Stop()
}

// heartbeatQuiet reports whether the heartbeats' virtio interrupt counts
// stood still over the last quietFor seconds of guest uptime, and over how
// long.
func heartbeatQuiet(lines []string) (string, bool) {
	type beat struct {
		up   float64
		irqs string
	}
	var beats []beat
	for _, l := range lines {
		_, rest, ok := strings.Cut(l, heartbeatTag)
		if !ok {
			continue
		}
		up, irqs, _ := strings.Cut(rest, " ")
		v, err := strconv.ParseFloat(up, 64)
		if err != nil {
			continue
		}
		beats = append(beats, beat{v, strings.TrimSpace(irqs)})
	}
	if len(beats) < 2 {
		return "", false
	}
	last := beats[len(beats)-1]
	first := last
	for i := len(beats) - 2; i >= 0 && beats[i].irqs == last.irqs; i-- {
		first = beats[i]
	}
	span := last.up - first.up
	return fmt.Sprintf("%.0f s (counts %q)", span, last.irqs), span >= quietFor
}

// lostInterruptIn reads a kvm snapshot and describes an interrupt a virtio
// device raised that waits, deliverable, in a vCPU's IRR; "" if none.
func lostInterruptIn(statePath, memPath string) (string, error) {
	f, err := snapshot.Read(statePath)
	if err != nil {
		return "", err
	}
	mem, err := os.ReadFile(memPath)
	if err != nil {
		return "", err
	}
	sec, ok := f.Section("kvm/cpu")
	if !ok {
		return "", fmt.Errorf("snapshot %s has no vCPU state", statePath)
	}
	cpus, err := kvmstate.Unmarshal(sec.Data)
	if err != nil {
		return "", err
	}
	var raised []string
	for _, s := range f.Sections {
		if name, ok := strings.CutPrefix(s.Name, "kvm/device/"); ok {
			if r := untakenUsed(s.Data, mem); r != "" {
				raised = append(raised, name+" "+r)
			}
		}
	}
	if len(raised) == 0 {
		return "", nil
	}
	for i, c := range cpus.VCPUs {
		const ifFlag = 1 << 9
		if c.Regs.RFLAGS&ifFlag == 0 {
			continue
		}
		ppr, _ := c.LAPIC.Reg(kvm.LAPICRegPPR)
		ppr &= 0xf0
		for v := 255; v >= 32; v-- {
			word, _ := c.LAPIC.Reg(kvm.LAPICRegIRR + 0x10*(v/32))
			if word&(1<<(v%32)) != 0 && uint32(v)&0xf0 > ppr {
				return fmt.Sprintf("%s; vCPU %d has interrupts enabled and vector %#x waiting in its LAPIC's IRR above its priority %#x, at rip %#x",
					strings.Join(raised, "; "), i, v, ppr, c.Regs.RIP), nil
			}
		}
	}
	return "", nil
}

// untakenUsed describes a virtio device section whose transport has its
// used-buffer interrupt raised and a queue whose used.idx has passed the
// guest's used_event; "" if not.
func untakenUsed(section, mem []byte) string {
	var d struct {
		Transport mmio.State `json:"transport"`
	}
	if json.Unmarshal(section, &d) != nil || d.Transport.ISR&mmio.IntVring == 0 {
		return ""
	}
	for i, q := range d.Transport.Queues {
		n := uint64(q.Size)
		if !q.Ready || q.AvailRing+6+2*n > uint64(len(mem)) || q.UsedRing+4 > uint64(len(mem)) {
			continue
		}
		usedEvent := binary.LittleEndian.Uint16(mem[q.AvailRing+4+2*n:])
		usedIdx := binary.LittleEndian.Uint16(mem[q.UsedRing+2:])
		if usedIdx != usedEvent && usedIdx-usedEvent <= uint16(q.Size) {
			return fmt.Sprintf("raised its interrupt for queue %d (used.idx %d, the guest asked for one at %d)", i, usedIdx, usedEvent)
		}
	}
	return ""
}
