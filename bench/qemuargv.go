package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ErrArgv means ember's logged QEMU command line could not be parsed or
// turned into a stand-alone one.
var ErrArgv = errors.New("QEMU command line")

// qemuCommandPrefix starts the Debug line where ember's qemu backend logs
// the QEMU command it runs.
const qemuCommandPrefix = "qemu command: "

// splitShell splits a command line quoted the way a POSIX shell reads it
// (single quotes, double quotes, backslashes); ember quotes its logged argv
// with single quotes.
func splitShell(s string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inArg := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("%w: unterminated single quote in %q", ErrArgv, s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inArg = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\\\"$`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("%w: unterminated double quote in %q", ErrArgv, s)
			}
			inArg = true
		case c == '\\':
			if i+1 >= len(s) {
				return nil, fmt.Errorf("%w: trailing backslash in %q", ErrArgv, s)
			}
			i++
			cur.WriteByte(s[i])
			inArg = true
		default:
			cur.WriteByte(c)
			inArg = true
		}
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args, nil
}

// emberQEMUArgv finds ember's logged QEMU command in a log line.
func emberQEMUArgv(logLine string) ([]string, error) {
	i := strings.Index(logLine, qemuCommandPrefix)
	if i < 0 {
		return nil, fmt.Errorf("%w: no %q in %q", ErrArgv, qemuCommandPrefix, logLine)
	}
	argv, err := splitShell(logLine[i+len(qemuCommandPrefix):])
	if err != nil {
		return nil, err
	}
	if len(argv) < 2 {
		return nil, fmt.Errorf("%w: %q is too short", ErrArgv, logLine)
	}
	return argv, nil
}

// bareInputs is what a stand-alone QEMU needs instead of the descriptors
// ember passes: file paths and tap names.
type bareInputs struct {
	Kernel, Initrd string
	// Drives maps the path ember gave a drive to the path the bare QEMU
	// uses (its own scratch copy); a drive not in the map keeps its path.
	Drives map[string]string
	// Taps are the tap device names, in the order of ember's -netdev options.
	Taps []string
}

// bareArgv turns the command ember's qemu backend ran into one QEMU runs
// on its own: the same machine, CPU, memory, devices, options and kernel
// command line (tsc_early_khz included), minus what exists only for ember
// to drive and watch QEMU: -S (ember starts the vCPUs with QMP "cont"), the
// QMP monitor and QEMU's debug log (-d/-D). Descriptors ember passes become paths: the kernel and initrd,
// the console (QEMU's stdio instead of ember's socket pair) and taps
// (opened by name). Anything else passed as a descriptor is refused, so a
// new kind of device cannot slip through unconverted.
func bareArgv(emberArgv []string, in bareInputs) ([]string, error) {
	if len(emberArgv) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrArgv)
	}
	out := []string{emberArgv[0]}
	tap := 0
	qmpIDs := map[string]bool{}
	args := emberArgv[1:]
	for i := 0; i < len(args); i++ {
		opt := args[i]
		if !strings.HasPrefix(opt, "-") {
			return nil, fmt.Errorf("%w: stray argument %q", ErrArgv, opt)
		}
		if opt == "-S" || opt == "-no-user-config" || opt == "-nodefaults" {
			if opt != "-S" {
				out = append(out, opt)
			}
			continue
		}
		if i+1 >= len(args) {
			return nil, fmt.Errorf("%w: %s has no value", ErrArgv, opt)
		}
		val := args[i+1]
		i++
		switch opt {
		case "-chardev":
			kind, rest, _ := strings.Cut(val, ",")
			id := optValue(rest, "id")
			switch {
			case kind == "socket" && id == "console":
				val = "stdio,id=console,signal=off"
			case kind == "socket" && optValue(rest, "fd") != "":
				// Any other passed socket is a monitor; dropped with its -mon.
				qmpIDs[id] = true
				continue
			}
		case "-mon":
			if qmpIDs[optValue(val, "chardev")] {
				continue
			}
		case "-d", "-D":
			// QEMU's debug log (ember reads CPU resets from it under TCG,
			// to tell a triple fault from a keyboard reset): ember's
			// instrumentation, like the monitor.
			continue
		case "-kernel":
			if in.Kernel == "" {
				return nil, fmt.Errorf("%w: no kernel path for %s", ErrArgv, val)
			}
			val = in.Kernel
		case "-initrd":
			if in.Initrd == "" {
				return nil, fmt.Errorf("%w: no initrd path for %s", ErrArgv, val)
			}
			val = in.Initrd
		case "-blockdev":
			var err error
			if val, err = rewriteJSON(val, func(m map[string]any) error { return renameDrive(m, in.Drives) }); err != nil {
				return nil, err
			}
		case "-netdev":
			var err error
			val, err = rewriteJSON(val, func(m map[string]any) error {
				if m["type"] != "tap" {
					return fmt.Errorf("%w: netdev type %v", ErrArgv, m["type"])
				}
				if tap >= len(in.Taps) {
					return fmt.Errorf("%w: more taps than the %d given", ErrArgv, len(in.Taps))
				}
				delete(m, "fd")
				m["ifname"] = in.Taps[tap]
				m["script"] = "no"
				m["downscript"] = "no"
				tap++
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
		if passesFD(val) {
			return nil, fmt.Errorf("%w: %s %s passes a descriptor the benchmark does not know how to replace", ErrArgv, opt, val)
		}
		out = append(out, opt, val)
	}
	if tap != len(in.Taps) {
		return nil, fmt.Errorf("%w: %d taps given, %d -netdev options", ErrArgv, len(in.Taps), tap)
	}
	return out, nil
}

// passesFD reports whether an option value refers to a passed descriptor.
func passesFD(val string) bool {
	if strings.Contains(val, "/dev/fd/") {
		return true
	}
	if strings.HasPrefix(val, "{") {
		var m map[string]any
		if json.Unmarshal([]byte(val), &m) != nil {
			return false
		}
		_, ok := m["fd"]
		return ok
	}
	_, rest, _ := strings.Cut(val, ",")
	return optValue(rest, "fd") != "" || strings.HasPrefix(val, "fd=")
}

// optValue returns key's value in a QEMU "k=v,k=v" option string.
func optValue(opts, key string) string {
	for _, kv := range strings.Split(opts, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// rewriteJSON edits a JSON-object option value, keeping numbers exact.
func rewriteJSON(val string, edit func(map[string]any) error) (string, error) {
	if !strings.HasPrefix(val, "{") {
		return "", fmt.Errorf("%w: expected a JSON option value, got %q", ErrArgv, val)
	}
	dec := json.NewDecoder(strings.NewReader(val))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrArgv, val, err)
	}
	if err := edit(m); err != nil {
		return "", err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return "", err
	}
	return strings.TrimSpace(b.String()), nil
}

// renameDrive replaces file names in a -blockdev tree.
func renameDrive(m map[string]any, drives map[string]string) error {
	if fn, ok := m["filename"].(string); ok {
		if strings.HasPrefix(fn, "/dev/fd/") {
			return fmt.Errorf("%w: drive passed as descriptor %s", ErrArgv, fn)
		}
		if to, ok := drives[fn]; ok {
			m["filename"] = to
		}
	}
	if f, ok := m["file"].(map[string]any); ok {
		return renameDrive(f, drives)
	}
	return nil
}
