package virtio_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/ember-vmm/ember/internal/virtio"
	vt "github.com/ember-vmm/ember/internal/virtio/virtiotest"
)

const memSize = 1 << 20

func setup(t *testing.T, size uint16, eventIdx bool) (*vt.VQ, *virtio.Queue) {
	t.Helper()
	mem := vt.NewMemory(t, memSize)
	vq := vt.NewVQ(mem, vt.NewAllocator(0x1000, memSize), size)
	q := vq.Queue(virtio.MaxQueueSize)
	if err := q.Activate(mem, eventIdx); err != nil {
		t.Fatal(err)
	}
	return vq, q
}

func TestPopPush(t *testing.T) {
	vq, q := setup(t, 8, false)
	var c virtio.Chain
	if ok, err := q.Pop(&c); ok || err != nil {
		t.Fatalf("Pop on empty ring = %v, %v", ok, err)
	}
	head := vq.Add(vt.R([]byte("hello ")), vt.R([]byte("world")), vt.W(4), vt.W(3))
	ok, err := q.Pop(&c)
	if !ok || err != nil {
		t.Fatalf("Pop = %v, %v", ok, err)
	}
	if c.Head != head || len(c.Out) != 2 || len(c.In) != 2 || c.OutLen != 11 || c.InLen != 7 {
		t.Fatalf("chain %+v", c)
	}
	got := make([]byte, 11)
	if n := c.ReadOut(got, 0); n != 11 || string(got) != "hello world" {
		t.Fatalf("ReadOut = %d %q", n, got)
	}
	part := make([]byte, 4)
	if n := c.ReadOut(part, 9); n != 2 || string(part[:2]) != "ld" {
		t.Fatalf("ReadOut at 9 = %d %q", n, part)
	}
	if n := c.WriteIn([]byte("abcdefgXYZ"), 0); n != 7 {
		t.Fatalf("WriteIn = %d", n)
	}
	addrs := vq.Chains[head]
	if a, b := vq.Read(addrs[2], 4), vq.Read(addrs[3], 3); string(a) != "abcd" || string(b) != "efg" {
		t.Fatalf("guest sees %q %q", a, b)
	}
	if err := q.Push(c.Head, 7); err != nil {
		t.Fatal(err)
	}
	if u := vq.TakeUsed(); len(u) != 1 || u[0] != (vt.Used{ID: uint32(head), Len: 7}) {
		t.Fatalf("used %+v", u)
	}
	if !q.NeedsSignal() {
		t.Fatal("NeedsSignal false after a push")
	}
	if q.NeedsSignal() {
		t.Fatal("NeedsSignal true with nothing new")
	}
}

func TestRange(t *testing.T) {
	bufs := [][]byte{[]byte("abc"), []byte(""), []byte("defg"), []byte("h")}
	tests := []struct {
		off, n uint64
		want   []string
	}{
		{0, 8, []string{"abc", "defg", "h"}},
		{1, 3, []string{"bc", "d"}},
		{3, 4, []string{"defg"}},
		{7, 5, []string{"h"}},
		{8, 1, nil},
		{2, 0, nil},
	}
	for _, tc := range tests {
		got := virtio.Range(bufs, tc.off, tc.n, nil)
		var s []string
		for _, b := range got {
			s = append(s, string(b))
		}
		if len(s) != len(tc.want) {
			t.Errorf("Range(%d,%d) = %q, want %q", tc.off, tc.n, s, tc.want)
			continue
		}
		for i := range s {
			if s[i] != tc.want[i] {
				t.Errorf("Range(%d,%d) = %q, want %q", tc.off, tc.n, s, tc.want)
			}
		}
	}
	if virtio.Len(bufs) != 8 {
		t.Fatal("Len")
	}
}

// TestWrapAround runs the free-running indices past 65535 through a small
// ring, checking every chain arrives intact and in order.
func TestWrapAround(t *testing.T) {
	vq, q := setup(t, 4, true)
	var c virtio.Chain
	buf := make([]byte, 2)
	for i := range 70000 {
		want := []byte{byte(i), byte(i >> 8)}
		vq.Add(vt.Buf{Data: want, Addr: 0x80000}, vt.Buf{Write: true, Len: 1, Addr: 0x80010})
		ok, err := q.Next(&c)
		if !ok || err != nil {
			t.Fatalf("iteration %d: Next = %v, %v", i, ok, err)
		}
		if c.ReadOut(buf, 0); !bytes.Equal(buf, want) {
			t.Fatalf("iteration %d: read %x, want %x", i, buf, want)
		}
		if err := q.Push(c.Head, 1); err != nil {
			t.Fatal(err)
		}
		if u := vq.TakeUsed(); len(u) != 1 || u[0].ID != uint32(c.Head) {
			t.Fatalf("iteration %d: used %+v", i, u)
		}
		if ok, err := q.Next(&c); ok || err != nil {
			t.Fatalf("iteration %d: ring not empty: %v %v", i, ok, err)
		}
		// Next armed avail_event at the driver's index.
		if ev := vq.AvailEvent(); ev != uint16(i+1) {
			t.Fatalf("iteration %d: avail_event %d", i, ev)
		}
	}
}

func TestIndirect(t *testing.T) {
	vq, q := setup(t, 8, false)
	head := vq.AddIndirect(vt.R([]byte("head")), vt.R([]byte("data")), vt.W(1))
	var c virtio.Chain
	ok, err := q.Pop(&c)
	if !ok || err != nil {
		t.Fatal(ok, err)
	}
	if c.Head != head || c.OutLen != 8 || c.InLen != 1 || len(c.Out) != 2 {
		t.Fatalf("chain %+v", c)
	}
}

func TestUndo(t *testing.T) {
	vq, q := setup(t, 8, false)
	a := vq.Add(vt.R([]byte("a")))
	b := vq.Add(vt.R([]byte("b")))
	var c virtio.Chain
	q.Pop(&c)
	q.Undo()
	q.Undo() // only the last pop can be undone
	if q.Pop(&c); c.Head != a {
		t.Fatalf("after undo got %d, want %d", c.Head, a)
	}
	q.Pop(&c)
	if c.Head != b {
		t.Fatalf("got %d, want %d", c.Head, b)
	}
	q.UndoN(2)
	if n, _ := q.Pending(); n != 2 {
		t.Fatalf("pending %d after UndoN(2)", n)
	}
}

func TestNeedsSignal(t *testing.T) {
	t.Run("no interrupt flag", func(t *testing.T) {
		vq, q := setup(t, 8, false)
		var c virtio.Chain
		vq.SetAvailFlags(1)
		vq.Add(vt.W(1))
		q.Pop(&c)
		q.Push(c.Head, 0)
		if q.NeedsSignal() {
			t.Fatal("signalled despite VIRTQ_AVAIL_F_NO_INTERRUPT")
		}
		vq.SetAvailFlags(0)
		vq.Add(vt.W(1))
		q.Pop(&c)
		q.Push(c.Head, 0)
		if !q.NeedsSignal() {
			t.Fatal("not signalled")
		}
	})
	t.Run("event idx", func(t *testing.T) {
		vq, q := setup(t, 8, true)
		var c virtio.Chain
		for range 4 {
			vq.Add(vt.W(1))
		}
		// The driver wants an interrupt once used.idx passes 2 (used_event=2).
		vq.SetUsedEvent(2)
		wantSignal := []bool{false, false, true, false}
		for i, want := range wantSignal {
			q.Pop(&c)
			q.Push(c.Head, 0)
			if got := q.NeedsSignal(); got != want {
				t.Fatalf("after %d pushes NeedsSignal = %v, want %v", i+1, got, want)
			}
		}
		// Batches crossing the event are signalled once.
		for range 3 {
			vq.Add(vt.W(1))
		}
		vq.SetUsedEvent(5)
		for range 3 {
			q.Pop(&c)
			q.Add(c.Head, 0)
		}
		q.Publish()
		if !q.NeedsSignal() {
			t.Fatal("batch crossing used_event not signalled")
		}
	})
}

func TestArmNotify(t *testing.T) {
	vq, q := setup(t, 8, true)
	var c virtio.Chain
	vq.Add(vt.W(1))
	vq.Add(vt.W(1))
	q.Pop(&c)
	// Not drained: arming sets avail_event to the driver's current index.
	if more, err := q.ArmNotify(); more || err != nil {
		t.Fatal(more, err)
	}
	if ev := vq.AvailEvent(); ev != 2 {
		t.Fatalf("avail_event %d, want 2", ev)
	}
	// Without EVENT_IDX nothing is written.
	vq2, q2 := setup(t, 8, false)
	if more, err := q2.ArmNotify(); more || err != nil {
		t.Fatal(more, err)
	}
	if ev := vq2.AvailEvent(); ev != 0 {
		t.Fatalf("avail_event written without EVENT_IDX: %d", ev)
	}
}

func TestActivateRejects(t *testing.T) {
	mem := vt.NewMemory(t, memSize)
	tests := []struct {
		name string
		mod  func(q *virtio.Queue)
	}{
		{"not ready", func(q *virtio.Queue) { q.Ready = false }},
		{"size 0", func(q *virtio.Queue) { q.Size = 0 }},
		{"size not power of two", func(q *virtio.Queue) { q.Size = 12 }},
		{"size above max", func(q *virtio.Queue) { q.Size = 512 }},
		{"desc misaligned", func(q *virtio.Queue) { q.DescTable = 0x1008 }},
		{"avail misaligned", func(q *virtio.Queue) { q.AvailRing = 0x3001 }},
		{"used misaligned", func(q *virtio.Queue) { q.UsedRing = 0x4002 }},
		{"desc outside RAM", func(q *virtio.Queue) { q.DescTable = memSize - 16 }},
		{"avail outside RAM", func(q *virtio.Queue) { q.AvailRing = 1 << 40 }},
		{"used wraps", func(q *virtio.Queue) { q.UsedRing = ^uint64(3) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := virtio.NewQueue(256)
			q.Size, q.Ready = 256, true
			q.DescTable, q.AvailRing, q.UsedRing = 0x1000, 0x3000, 0x4000
			if err := q.Activate(mem, false); err != nil {
				t.Fatalf("valid queue: %v", err)
			}
			tc.mod(q)
			if err := q.Activate(mem, false); !errors.Is(err, virtio.ErrQueueConfig) {
				t.Fatalf("Activate = %v, want ErrQueueConfig", err)
			}
		})
	}
}

// TestMalicious feeds broken rings and chains; each must give ErrBroken,
// stick, and never panic.
func TestMalicious(t *testing.T) {
	const size = 8
	tests := []struct {
		name  string
		build func(vq *vt.VQ)
	}{
		{"avail idx too far ahead", func(vq *vt.VQ) { vq.SetAvailIdx(size + 1) }},
		{"avail idx far behind", func(vq *vt.VQ) { vq.SetAvailIdx(0xffff) }},
		{"head out of range", func(vq *vt.VQ) { vq.Publish(size) }},
		{"next out of range", func(vq *vt.VQ) {
			vq.SetDesc(0, 0x8000, 4, virtio.DescFlagNext, size)
			vq.Publish(0)
		}},
		{"loop", func(vq *vt.VQ) {
			vq.SetDesc(0, 0x8000, 4, virtio.DescFlagNext, 1)
			vq.SetDesc(1, 0x8000, 4, virtio.DescFlagNext, 0)
			vq.Publish(0)
		}},
		{"self loop", func(vq *vt.VQ) {
			vq.SetDesc(3, 0x8000, 4, virtio.DescFlagNext, 3)
			vq.Publish(3)
		}},
		{"buffer outside RAM", func(vq *vt.VQ) {
			vq.SetDesc(0, memSize-2, 4, 0, 0)
			vq.Publish(0)
		}},
		{"buffer address wraps", func(vq *vt.VQ) {
			vq.SetDesc(0, ^uint64(0)-1, 0x10, 0, 0)
			vq.Publish(0)
		}},
		{"huge length", func(vq *vt.VQ) {
			vq.SetDesc(0, 0x8000, 0xffffffff, 0, 0)
			vq.Publish(0)
		}},
		{"readable after writable", func(vq *vt.VQ) {
			vq.SetDesc(0, 0x8000, 4, virtio.DescFlagNext|virtio.DescFlagWrite, 1)
			vq.SetDesc(1, 0x9000, 4, 0, 0)
			vq.Publish(0)
		}},
		{"indirect with next", func(vq *vt.VQ) {
			vq.SetDesc(0, 0x8000, 16, virtio.DescFlagIndirect|virtio.DescFlagNext, 1)
			vq.Publish(0)
		}},
		{"indirect not first", func(vq *vt.VQ) {
			vq.SetDesc(0, 0x9000, 4, virtio.DescFlagNext, 1)
			vq.SetDesc(1, 0x8000, 16, virtio.DescFlagIndirect, 0)
			vq.Publish(0)
		}},
		{"indirect odd length", func(vq *vt.VQ) {
			vq.SetDesc(0, 0x8000, 17, virtio.DescFlagIndirect, 0)
			vq.Publish(0)
		}},
		{"indirect empty", func(vq *vt.VQ) {
			vq.SetDesc(0, 0x8000, 0, virtio.DescFlagIndirect, 0)
			vq.Publish(0)
		}},
		{"indirect too long", func(vq *vt.VQ) {
			vq.SetDesc(0, 0x8000, 16*(virtio.MaxIndirectLen+1), virtio.DescFlagIndirect, 0)
			vq.Publish(0)
		}},
		{"indirect table outside RAM", func(vq *vt.VQ) {
			vq.SetDesc(0, memSize-16, 32, virtio.DescFlagIndirect, 0)
			vq.Publish(0)
		}},
		{"nested indirect", func(vq *vt.VQ) {
			// Table at 0x8000 whose only entry is itself indirect.
			vq.Mem.WriteAt([]byte{0x00, 0x90, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 4, 0, 0, 0}, 0x8000)
			vq.SetDesc(0, 0x8000, 16, virtio.DescFlagIndirect, 0)
			vq.Publish(0)
		}},
		{"indirect loop", func(vq *vt.VQ) {
			// Two entries pointing at each other.
			vq.Mem.WriteAt([]byte{0x00, 0x90, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 1, 0, 1, 0}, 0x8000)
			vq.Mem.WriteAt([]byte{0x00, 0x90, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0}, 0x8010)
			vq.SetDesc(0, 0x8000, 32, virtio.DescFlagIndirect, 0)
			vq.Publish(0)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vq, q := setup(t, size, true)
			tc.build(vq)
			var c virtio.Chain
			ok, err := q.Next(&c)
			if ok || !errors.Is(err, virtio.ErrBroken) {
				t.Fatalf("Next = %v, %v; want ErrBroken", ok, err)
			}
			// The queue stays broken, whatever the driver does next.
			vq.SetAvailIdx(0)
			if _, err2 := q.Pop(&c); !errors.Is(err2, virtio.ErrBroken) {
				t.Fatalf("second Pop = %v", err2)
			}
			if q.Push(0, 0) == nil || q.NeedsSignal() {
				t.Fatal("broken queue still accepts used elements")
			}
			t.Log(err)
		})
	}
}

func TestQueueInactive(t *testing.T) {
	q := virtio.NewQueue(16)
	var c virtio.Chain
	if _, err := q.Pop(&c); err == nil {
		t.Fatal("Pop on an inactive queue succeeded")
	}
	if q.NeedsSignal() {
		t.Fatal("NeedsSignal on an inactive queue")
	}
}

// TestSetPosition: a queue activated again over the same rings continues
// from a recorded position, as after a vhost-user stop or a snapshot.
func TestSetPosition(t *testing.T) {
	mem := vt.NewMemory(t, memSize)
	vq := vt.NewVQ(mem, vt.NewAllocator(0x1000, memSize), 8)
	q := vq.Queue(virtio.MaxQueueSize)
	if err := q.Activate(mem, true); err != nil {
		t.Fatal(err)
	}
	var c virtio.Chain
	for range 11 { // past the ring size, so indices wrap
		vq.Add(vt.W(1))
		if ok, err := q.Pop(&c); !ok || err != nil {
			t.Fatalf("Pop = %v, %v", ok, err)
		}
		if err := q.Push(c.Head, 1); err != nil {
			t.Fatal(err)
		}
		vq.TakeUsed()
	}
	avail, used := q.Position()
	if avail != 11 || used != 11 {
		t.Fatalf("Position = %d, %d, want 11, 11", avail, used)
	}

	again := vq.Queue(virtio.MaxQueueSize)
	if err := again.Activate(mem, true); err != nil {
		t.Fatal(err)
	}
	again.SetPosition(avail, used)
	if ok, err := again.Pop(&c); ok || err != nil {
		t.Fatalf("Pop after SetPosition on a drained ring = %v, %v: old chains came back", ok, err)
	}
	head := vq.Add(vt.W(2))
	if ok, err := again.Pop(&c); !ok || err != nil || c.Head != head {
		t.Fatalf("Pop = %v, %v, head %d, want the new chain %d", ok, err, c.Head, head)
	}
	if err := again.Push(c.Head, 2); err != nil {
		t.Fatal(err)
	}
	if u := vq.TakeUsed(); len(u) != 1 || u[0] != (vt.Used{ID: uint32(head), Len: 2}) {
		t.Fatalf("used after SetPosition: %+v", u)
	}
	if a, u := again.Position(); a != 12 || u != 12 {
		t.Fatalf("Position = %d, %d, want 12, 12", a, u)
	}
}
