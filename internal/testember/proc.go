package testember

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// procStat is what the harness needs from /proc/<pid>/stat.
type procStat struct {
	pid, ppid int
	comm      string
	state     byte
}

func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, false
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open || end+2 >= len(s) {
		return procStat{}, false
	}
	fields := strings.Fields(s[end+2:])
	if len(fields) < 2 {
		return procStat{}, false
	}
	ppid, _ := strconv.Atoi(fields[1])
	return procStat{pid: pid, ppid: ppid, comm: s[open+1 : end], state: fields[0][0]}, true
}

// children lists the live processes whose parent is pid.
func children(pid int) []procStat {
	ents, _ := os.ReadDir("/proc")
	var out []procStat
	for _, ent := range ents {
		p, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(p); ok && st.ppid == pid && st.state != 'Z' {
			out = append(out, st)
		}
	}
	return out
}

// Descendants lists pid's live descendants.
func Descendants(pid int) []int {
	var out []int
	for queue := []int{pid}; len(queue) > 0; queue = queue[1:] {
		for _, c := range children(queue[0]) {
			out = append(out, c.pid)
			queue = append(queue, c.pid)
		}
	}
	return out
}

// Alive reports whether pid runs (a zombie counts as dead).
func Alive(pid int) bool {
	st, ok := readStat(pid)
	return ok && st.state != 'Z'
}

// WaitGone waits until none of pids runs and returns those still running.
func WaitGone(pids []int, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		var left []int
		for _, p := range pids {
			if Alive(p) {
				left = append(left, p)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RuntimeDirs lists ember's runtime directories (<tmp>/ember-<pid>-*).
func RuntimeDirs(pid int) ([]string, error) {
	return filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("ember-%d-*", pid)))
}
