package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNoGuestRAM means no mapping of a QEMU process looked like guest RAM.
var ErrNoGuestRAM = errors.New("guest RAM mapping not found")

// proc is one process the benchmark started. Its stdout and stderr go to
// one pipe read into a lineLog; it is killed by the kernel if the
// benchmark dies (parent-death signal) and by cleanup otherwise.
type proc struct {
	name    string
	cmd     *exec.Cmd
	pid     int
	out     *lineLog
	started time.Time // just before fork/exec
	done    chan struct{}
	state   *os.ProcessState
	pipe    *os.File
}

var (
	liveMu sync.Mutex
	live   = map[*proc]bool{}
)

// startProc starts argv with stdin from /dev/null (or ExtraFiles as given).
func startProc(name string, argv []string, dir string, extra []*os.File) (*proc, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("starting %s: empty command", name)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.ExtraFiles = extra
	// Own process group: a terminal's Ctrl-C reaches the benchmark, which
	// cleans up in order. Parent-death signal: nothing outlives a killed
	// benchmark.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	// Real files, not io.Writers: Wait must not depend on grandchildren
	// that inherited the descriptors.
	cmd.Stdout, cmd.Stderr = w, w
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), pipe: r}
	p.started = time.Now()
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p.pid = cmd.Process.Pid
	p.out = newLineLog(r)
	liveMu.Lock()
	live[p] = true
	liveMu.Unlock()
	go func() {
		cmd.Wait()
		p.state = cmd.ProcessState
		liveMu.Lock()
		delete(live, p)
		liveMu.Unlock()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends the process: SIGTERM first when graceful (ember then takes its
// QEMU down and removes what it made), SIGKILL after grace or at once.
func (p *proc) stop(graceful bool) {
	if !p.exited() {
		if graceful {
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
			}
		}
		if !p.exited() {
			// The whole group: ip netns exec and anything else it started.
			syscall.Kill(-p.pid, syscall.SIGKILL)
			p.cmd.Process.Kill()
		}
	}
	<-p.done
	select {
	case <-p.out.done:
	case <-time.After(2 * time.Second):
	}
	p.pipe.Close()
}

// cpuTime is the user+system CPU time of an ended process (its rusage).
func (p *proc) cpuTime() time.Duration {
	if p.state == nil {
		return 0
	}
	ru, ok := p.state.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// killAll ends every process still running; used on the way out.
func killAll() {
	liveMu.Lock()
	ps := make([]*proc, 0, len(live))
	for p := range live {
		ps = append(ps, p)
	}
	liveMu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop(true) }()
	}
	wg.Wait()
}

// children lists the live processes whose parent is pid, with their comm.
func children(pid int) map[int]string {
	out := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open || end+2 >= len(s) {
			continue
		}
		f := strings.Fields(s[end+2:])
		if len(f) < 2 || f[0] == "Z" {
			continue
		}
		if pp, _ := strconv.Atoi(f[1]); pp == pid {
			out[c] = s[open+1 : end]
		}
	}
	return out
}

// qemuChild returns the pid of pid's QEMU child.
func qemuChild(pid int) (int, error) {
	for c, comm := range children(pid) {
		if strings.HasPrefix(comm, "qemu-system") {
			return c, nil
		}
	}
	return 0, fmt.Errorf("process %d has no QEMU child", pid)
}

// mapping is one entry of /proc/<pid>/smaps.
type mapping struct {
	perms, path     string
	sizeKB, rssKB   int64
	anonKB, privKB  int64 // Anonymous, Private_Clean+Private_Dirty
	swapKB, sharedK int64
}

func (m mapping) anonymous() bool {
	return m.path == "" || (strings.HasPrefix(m.path, "[") && m.path != "[vdso]" && m.path != "[vvar]" && m.path != "[vsyscall]")
}

// readSmaps parses /proc/<pid>/smaps.
func readSmaps(pid int) ([]mapping, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseSmaps(f)
}

func parseSmaps(r io.Reader) ([]mapping, error) {
	var out []mapping
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		t := sc.Text()
		f := strings.Fields(t)
		if len(f) == 0 {
			continue
		}
		// A header: "start-end perms offset dev inode [path]".
		if strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			if len(f) < 5 {
				return nil, fmt.Errorf("smaps: bad header %q", t)
			}
			m := mapping{perms: f[1]}
			if len(f) >= 6 {
				m.path = strings.Join(f[5:], " ")
			}
			out = append(out, m)
			continue
		}
		if len(out) == 0 || len(f) < 2 || !strings.HasSuffix(f[0], ":") {
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue // VmFlags and the like
		}
		m := &out[len(out)-1]
		switch f[0] {
		case "Size:":
			m.sizeKB = v
		case "Rss:":
			m.rssKB = v
		case "Anonymous:":
			m.anonKB = v
		case "Private_Clean:", "Private_Dirty:":
			m.privKB += v
		case "Shared_Clean:", "Shared_Dirty:":
			m.sharedK += v
		case "Swap:":
			m.swapKB = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// memUse is one process's resident memory, split the way the report
// explains it. All in KiB.
type memUse struct {
	Total    int64 // all mappings' Rss
	GuestRAM int64 // Rss of the guest RAM mapping (0 for non-QEMU)
	TCG      int64 // Rss of TCG's translated-code buffer (anonymous, executable)
	BootFile int64 // Rss of mappings of the kernel and initrd files
	Binary   int64 // Rss of the executable and shared libraries
	Anon     int64 // Anonymous memory outside guest RAM and TCG (heaps, stacks, device state)
	Shared   int64 // Shared_Clean+Shared_Dirty outside guest RAM
}

// Overhead is everything resident except the guest's RAM.
func (m memUse) Overhead() int64 { return m.Total - m.GuestRAM }

func (m memUse) add(o memUse) memUse {
	return memUse{
		Total: m.Total + o.Total, GuestRAM: m.GuestRAM + o.GuestRAM, TCG: m.TCG + o.TCG,
		BootFile: m.BootFile + o.BootFile, Binary: m.Binary + o.Binary, Anon: m.Anon + o.Anon,
		Shared: m.Shared + o.Shared,
	}
}

// classify splits a process's mappings. guestMiB > 0 says it is a QEMU
// whose guest RAM is one anonymous mapping of exactly that size (QEMU maps
// each RAM block separately; microvm has one); bootFiles are the paths
// of the kernel and initrd, which QEMU keeps mapped.
func classify(maps []mapping, guestMiB int, bootFiles []string) (memUse, error) {
	var u memUse
	guest := -1
	if guestMiB > 0 {
		want := int64(guestMiB) * 1024
		for i, m := range maps {
			if m.anonymous() && m.sizeKB == want && strings.HasPrefix(m.perms, "rw") {
				guest = i
				break
			}
		}
		if guest < 0 {
			// Allow QEMU's alignment slack, but never a smaller mapping.
			for i, m := range maps {
				if m.anonymous() && m.sizeKB >= want && m.sizeKB <= want+8*1024 && strings.HasPrefix(m.perms, "rw") && !strings.Contains(m.perms, "x") {
					guest = i
					break
				}
			}
		}
		if guest < 0 {
			return u, fmt.Errorf("%w: no anonymous %d MiB mapping", ErrNoGuestRAM, guestMiB)
		}
	}
	for i, m := range maps {
		u.Total += m.rssKB
		if i == guest {
			u.GuestRAM = m.rssKB
			continue
		}
		u.Shared += m.sharedK
		switch {
		case m.anonymous() && strings.Contains(m.perms, "x") && m.sizeKB >= 32*1024:
			u.TCG += m.rssKB
		case m.anonymous():
			u.Anon += m.rssKB
		case isBootFile(m.path, bootFiles):
			u.BootFile += m.rssKB
		default:
			u.Binary += m.rssKB
		}
	}
	return u, nil
}

func isBootFile(path string, files []string) bool {
	path = strings.TrimSuffix(path, " (deleted)")
	for _, f := range files {
		if f != "" && path == f {
			return true
		}
	}
	return false
}

// measureMem reads and classifies one process's memory.
func measureMem(pid, guestMiB int, bootFiles []string) (memUse, error) {
	maps, err := readSmaps(pid)
	if err != nil {
		return memUse{}, err
	}
	return classify(maps, guestMiB, bootFiles)
}

func kib2mib(k int64) float64 { return float64(k) / 1024 }
