package faults

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/testember"
	"github.com/ember-vmm/ember/internal/testguest"
)

// The body of Firecracker's 503 to a connection beyond its tenth (the
// whole answer is checked byte for byte in TestClientDisconnect).
const serverFullBody = `{ "error": "Too many open connections" }`

const (
	errPreBoot  = "The requested operation is not supported before starting the microVM."
	errPostBoot = "The requested operation is not supported after starting the microVM."
)

// op is one request and what came of it.
type op struct {
	client     int
	method     string
	path, body string
	start, end time.Time
	status     int    // 0: no answer (err)
	answer     string // body
	full       bool   // the server-full 503
	err        error
}

func (o *op) String() string {
	return fmt.Sprintf("client %d %s %s %s [%v..%v] → %d %q %v", o.client, o.method, o.path, o.body,
		o.start.Format("15:04:05.000000"), o.end.Format("15:04:05.000000"), o.status, o.answer, o.err)
}

func (o *op) state() string {
	var info struct {
		State string `json:"state"`
	}
	json.Unmarshal([]byte(o.answer), &info)
	return info.State
}

// rawDo sends one request on its own connection, as a Firecracker client
// may, and reads the answer even if the server closed the connection before
// the request was written (the server-full 503 comes at once).
func rawDo(sock string, o *op) {
	o.start = time.Now()
	defer func() { o.end = time.Now() }()
	c, err := net.DialTimeout("unix", sock, testember.APITimeout)
	if err != nil {
		o.err = err
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testember.APITimeout))
	req := o.method + " " + o.path + " HTTP/1.1\r\nAccept: application/json\r\n"
	if o.body != "" {
		req += fmt.Sprintf("Content-Type: application/json\r\nContent-Length: %d\r\n", len(o.body))
	}
	req += "\r\n" + o.body
	_, werr := io.WriteString(c, req)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		o.err = errors.Join(werr, err)
		return
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	o.status, o.answer, o.err = resp.StatusCode, string(b), err
	o.full = o.status == 503 && o.answer == serverFullBody && resp.Header.Get("Server") == "Firecracker API"
}

// hammer runs clients goroutines, each making n requests chosen by pick
// (retrying a request the server turned away as full), and returns every
// attempt.
func hammer(sock string, clients, n int, pick func(client, i int, r *rand.Rand) op) []*op {
	return hammerUntil(sock, clients, n, nil, pick)
}

// hammerUntil is hammer that also stops a client once stop returns true.
func hammerUntil(sock string, clients, n int, stop func() bool, pick func(client, i int, r *rand.Rand) op) []*op {
	var mu sync.Mutex
	var all []*op
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(c), uint64(time.Now().UnixNano())))
			var mine []*op
			for i := range n {
				if stop != nil && stop() {
					break
				}
				for {
					o := pick(c, i, r)
					o.client = c
					rawDo(sock, &o)
					mine = append(mine, &o)
					if !o.full {
						break
					}
					time.Sleep(time.Duration(r.IntN(5)) * time.Millisecond)
				}
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return all
}

// TestConcurrentClients: 64 clients at once through a VM's life — before
// boot, racing InstanceStart, pausing and resuming, and the shutdown. Every
// request is answered (no hang, no 5xx but Firecracker's server-full 503),
// every answer is the one Firecracker gives in the state some serial order
// of the requests puts it in: exactly one InstanceStart succeeds; config
// changes succeed only before it and fail with Firecracker's error after;
// the state GET / reports is one a PATCH that may precede it set.
func TestConcurrentClients(t *testing.T) {
	t.Parallel()
	a := testember.RequireVM(t)
	e := startEmber(t, testember.Options{})
	const clients = 64
	machine := `{"vcpu_count": 1, "mem_size_mib": 128}`
	bootSrc, _ := json.Marshal(map[string]string{"kernel_image_path": a.Vmlinux, "initrd_path": a.Initramfs,
		"boot_args": testember.BootArgs(testguest.Counter(), testguest.End(testguest.EndWait))})
	e.MustAPI("PUT", "/machine-config", machine, http.StatusNoContent)
	e.MustAPI("PUT", "/boot-source", string(bootSrc), http.StatusNoContent)

	var bad []string
	fail := func(format string, args ...any) {
		if len(bad) < 30 {
			bad = append(bad, fmt.Sprintf(format, args...))
		}
	}
	gets := []string{"/", "/machine-config", "/vm/config"}
	get := func(r *rand.Rand) op { return op{method: "GET", path: gets[r.IntN(len(gets))]} }
	patch := func(r *rand.Rand) op {
		s := []string{"Paused", "Resumed"}[r.IntN(2)]
		return op{method: "PATCH", path: "/vm", body: `{"state": "` + s + `"}`}
	}
	action := func(a string) op {
		return op{method: "PUT", path: "/actions", body: `{"action_type": "` + a + `"}`}
	}
	// Answers every phase shares: no error, no 5xx but the 503.
	basic := func(ops []*op) {
		for _, o := range ops {
			switch {
			case o.err != nil:
				fail("no answer: %v", o)
			case o.full:
			case o.status >= 500:
				fail("5xx: %v", o)
			case o.method == "GET" && o.status != 200:
				fail("GET not 200: %v", o)
			}
		}
	}

	// Phase 1: before boot. Config PUTs succeed, PATCH and Ctrl-Alt-Del
	// fail with Firecracker's pre-boot error, GETs answer.
	t0 := time.Now()
	ops := hammer(e.Sock, clients, 12, func(_, _ int, r *rand.Rand) op {
		switch r.IntN(5) {
		case 0:
			return op{method: "PUT", path: "/machine-config", body: machine}
		case 1:
			return patch(r)
		case 2:
			return action("SendCtrlAltDel")
		default:
			return get(r)
		}
	})
	basic(ops)
	for _, o := range ops {
		switch {
		case o.full || o.err != nil:
		case o.method == "PUT" && o.path == "/machine-config" && o.status != 204,
			(o.method == "PATCH" || o.path == "/actions") && (o.status != 400 || faultMessage(o.answer) != errPreBoot),
			o.path == "/" && o.status == 200 && o.state() != "Not started":
			fail("before boot: %v", o)
		}
	}
	t.Logf("phase 1 (before boot): %d requests in %v", len(ops), time.Since(t0))

	// Phase 2: every client sends InstanceStart once, amid config PUTs,
	// PATCHes and GETs.
	t0 = time.Now()
	ops2 := hammer(e.Sock, clients, 8, func(c, i int, r *rand.Rand) op {
		if i == c%8 {
			return action("InstanceStart")
		}
		switch r.IntN(4) {
		case 0:
			return op{method: "PUT", path: "/machine-config", body: machine}
		case 1:
			return patch(r)
		default:
			return get(r)
		}
	})
	basic(ops2)
	var started *op
	for _, o := range ops2 {
		if o.path == "/actions" && o.status == 204 {
			if started != nil {
				fail("two InstanceStarts succeeded: %v and %v", started, o)
			}
			started = o
		}
	}
	if started == nil {
		t.Fatalf("no InstanceStart succeeded; %d requests, first problems: %s", len(ops2), strings.Join(bad, "\n"))
	}
	// Before: a request answered as before boot must have started before
	// the successful InstanceStart ended; after: one answered as after
	// boot must have ended after it started.
	before := func(o *op) bool { return o.start.Before(started.end) }
	after := func(o *op) bool { return o.end.After(started.start) }
	for _, o := range ops2 {
		if o.full || o.err != nil || o == started {
			continue
		}
		msg := faultMessage(o.answer)
		ok := true
		switch {
		case o.path == "/actions":
			ok = o.status == 400 && msg == errPostBoot && after(o)
		case o.method == "PUT":
			ok = o.status == 204 && before(o) || o.status == 400 && msg == errPostBoot && after(o)
		case o.method == "PATCH":
			ok = o.status == 400 && msg == errPreBoot && before(o) || o.status == 204 && after(o)
		case o.path == "/":
			s := o.state()
			ok = s == "Not started" && before(o) || (s == "Running" || s == "Paused") && after(o)
		}
		if !ok {
			fail("around InstanceStart (%v): %v", started, o)
		}
	}
	t.Logf("phase 2 (InstanceStart race): %d requests in %v", len(ops2), time.Since(t0))

	// Phase 3: running. PATCHes pause and resume, everything else is
	// refused after boot or answered.
	t0 = time.Now()
	ops3 := hammer(e.Sock, clients, 16, func(_, _ int, r *rand.Rand) op {
		switch r.IntN(6) {
		case 0:
			return op{method: "PUT", path: "/machine-config", body: machine}
		case 1:
			return action("InstanceStart")
		case 2, 3:
			return patch(r)
		default:
			return get(r)
		}
	})
	basic(ops3)
	for _, o := range ops3 {
		if o.full || o.err != nil {
			continue
		}
		msg := faultMessage(o.answer)
		switch {
		case o.method == "PUT" && (o.status != 400 || msg != errPostBoot),
			o.method == "PATCH" && o.status != 204:
			fail("running: %v", o)
		}
	}
	checkStates(append(ops2, ops3...), started, fail)
	t.Logf("phase 3 (pause/resume): %d requests in %v", len(ops3), time.Since(t0))

	// Phase 4: shutdown. Resume, then Ctrl-Alt-Del while every client
	// keeps asking until ember is gone.
	e.MustAPI("PATCH", "/vm", `{"state": "Resumed"}`, http.StatusNoContent)
	e.WaitLineFrom(e.Con.Len(), "EMBER-GUEST: tick", testember.BootTimeout)
	qemu := e.QEMUPID()
	dir := e.runtimeDir()
	var cad op
	var cadSent time.Time
	cadDone := make(chan struct{})
	go func() {
		time.Sleep(200 * time.Millisecond)
		cadSent = time.Now()
		for {
			cad = action("SendCtrlAltDel")
			rawDo(e.Sock, &cad)
			if !cad.full {
				break
			}
			time.Sleep(time.Millisecond)
		}
		close(cadDone)
	}()
	t0 = time.Now()
	// Each client asks until ember is gone or its own request fails.
	ops4 := hammerUntil(e.Sock, clients, 300, e.Exited, func(_, _ int, r *rand.Rand) op { return get(r) })
	<-cadDone
	for _, o := range ops4 {
		if o.err == nil {
			if !o.full && o.status != 200 {
				fail("shutdown: %v", o)
			}
			continue
		}
		// After the exit, connecting fails; in flight at the exit, the
		// connection ends. Neither may happen before Ctrl-Alt-Del was sent.
		if cadSent.IsZero() || o.end.Before(cadSent) {
			fail("request failed before Ctrl-Alt-Del: %v", o)
		}
		if errors.Is(o.err, syscall.ETIMEDOUT) || strings.Contains(o.err.Error(), "timeout") {
			fail("hang: %v", o)
		}
	}
	if cad.status != 204 {
		fail("Ctrl-Alt-Del: %v", &cad)
	}
	if len(bad) > 0 {
		t.Errorf("%d or more inconsistent answers:\n%s", len(bad), strings.Join(bad, "\n"))
		bad = nil
	}
	if code, sig := e.WaitExit(testember.ExitTimeout); code != 0 || sig != 0 {
		t.Errorf("ember ended with %v after Ctrl-Alt-Del, want exit 0", e.State())
	}
	t.Logf("phase 4 (shutdown): %d requests in %v", len(ops4), time.Since(t0))
	full := 0
	for _, all := range [][]*op{ops, ops2, ops3, ops4} {
		for _, o := range all {
			if o.full {
				full++
			}
		}
	}
	t.Logf("server-full 503 answers (retried): %d", full)
	if len(bad) > 0 {
		t.Errorf("%d or more inconsistent answers:\n%s", len(bad), strings.Join(bad, "\n"))
	}
	assertClean(t, e, []int{qemu}, dir, "")
}

// checkStates checks every GET / state against the PATCHes (and the
// InstanceStart) answered 204, as reads of a register: the state read must
// have been written by a request that started before the read ended, with
// no request writing the other state entirely between the two.
func checkStates(ops []*op, started *op, fail func(string, ...any)) {
	type write struct {
		v          string
		start, end time.Time
	}
	writes := []write{{"Running", started.start, started.end}}
	for _, o := range ops {
		if o.method == "PATCH" && o.status == 204 {
			v := "Running"
			if strings.Contains(o.body, "Paused") {
				v = "Paused"
			}
			writes = append(writes, write{v, o.start, o.end})
		}
	}
	for _, r := range ops {
		if r.path != "/" || r.status != 200 || !r.start.After(started.end) {
			continue
		}
		v := r.state()
		var latest *write
		for i := range writes {
			w := &writes[i]
			if w.v == v && w.start.Before(r.end) && (latest == nil || w.end.After(latest.end)) {
				latest = w
			}
		}
		if latest == nil {
			fail("GET / read %q that nothing wrote: %v", v, r)
			continue
		}
		for _, w := range writes {
			if w.v != v && w.start.After(latest.end) && w.end.Before(r.start) {
				fail("GET / read %q, but a write of %q [%v..%v] came entirely after the last %q and before the read: %v",
					v, w.v, w.start.Format("15:04:05.000000"), w.end.Format("15:04:05.000000"), v, r)
				break
			}
		}
	}
}
