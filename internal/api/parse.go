package api

import (
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/ember-vmm/ember/internal/metrics"
	"github.com/ember-vmm/ember/internal/strictjson"
	"github.com/ember-vmm/ember/internal/vmconfig"
	"github.com/ember-vmm/ember/internal/vmm"
)

// requestError is a failure to turn an HTTP request into an action (400).
// msg is the fault_message; debug is how Firecracker logs the error (Rust's
// Debug of its RequestError).
type requestError struct {
	msg   string
	debug string
}

func (e *requestError) Error() string { return e.msg }

func genericError(msg string) *requestError {
	return &requestError{msg: msg, debug: "Generic(BadRequest, " + rustDebugString(msg) + ")"}
}

var (
	errEmptyID   = &requestError{msg: "The ID cannot be empty.", debug: "EmptyID"}
	errInvalidID = &requestError{msg: "API Resource IDs can only contain alphanumeric characters and underscores.", debug: "InvalidID"}
)

func invalidPathMethod(path, method string) *requestError {
	return &requestError{
		msg:   fmt.Sprintf("Invalid request method and/or path: %s %s.", method, path),
		debug: fmt.Sprintf("InvalidPathMethod(%s, %s)", rustDebugString(path), methodDebug(method)),
	}
}

func serdeError(err error) *requestError {
	var se *strictjson.Error
	debug := "SerdeJson(" + rustDebugString(err.Error()) + ")"
	if errors.As(err, &se) {
		debug = se.Debug()
	}
	return &requestError{
		msg:   "An error occurred when deserializing the json body of a request: " + err.Error() + ".",
		debug: "SerdeJson(" + debug + ")",
	}
}

// methodError is Firecracker's answer to a body where none belongs or no
// body where one is needed.
func methodError(method string) *requestError {
	switch method {
	case "GET":
		return genericError("GET request cannot have a body.")
	case "PUT":
		return genericError("Empty PUT request.")
	case "PATCH":
		return genericError("Empty PATCH request.")
	}
	return genericError("Empty Delete request.")
}

// parsed is a request turned into an action.
type parsed struct {
	action      vmm.Action
	deprecation string
}

// tokens splits a path as Firecracker does: leading slashes trimmed, split
// on '/', a trailing empty piece dropped.
type tokens struct{ parts []string }

func splitPath(p string) *tokens {
	p = strings.TrimLeft(p, "/")
	if p == "" {
		return &tokens{}
	}
	parts := strings.Split(p, "/")
	if parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	}
	return &tokens{parts: parts}
}

func (t *tokens) next() (string, bool) {
	if len(t.parts) == 0 {
		return "", false
	}
	s := t.parts[0]
	t.parts = t.parts[1:]
	return s, true
}

// checkedID validates a path id: non-empty, Unicode alphanumerics and '_'.
func checkedID(id string, ok bool) (string, *requestError) {
	if !ok || id == "" {
		return "", errEmptyID
	}
	for _, r := range id {
		if r != '_' && !isAlphanumeric(r) {
			return "", errInvalidID
		}
	}
	return id, nil
}

// isAlphanumeric is Rust's char::is_alphanumeric: Alphabetic or Numeric.
func isAlphanumeric(r rune) bool {
	return unicode.IsLetter(r) || unicode.In(r, unicode.Nl, unicode.Other_Alphabetic, unicode.Nd, unicode.No)
}

func decode[T any](body []byte, v *T) *requestError {
	if err := strictjson.Unmarshal(body, v); err != nil {
		return serdeError(err)
	}
	return nil
}

// parse routes a request the way Firecracker's ParsedRequest does, in the
// same order of checks, counting the same request metrics.
func parse(method, path string, body []byte, m *metrics.Metrics) (*parsed, *requestError) {
	t := splitPath(path)
	first, _ := t.next()
	has := body != nil
	ok := func(a vmm.Action) (*parsed, *requestError) { return &parsed{action: a}, nil }

	switch method {
	case "GET":
		if !has {
			switch first {
			case "":
				m.GetAPIRequests.InstanceInfoCount.Inc()
				return ok(vmm.GetInstanceInfo{})
			case "balloon":
				return parseGetBalloon(t)
			case "version":
				m.GetAPIRequests.VMMVersionCount.Inc()
				return ok(vmm.GetVersion{})
			case "vm":
				if s, _ := t.next(); s == "config" {
					return ok(vmm.GetFullConfig{})
				}
				return nil, invalidPathMethod(first, method)
			case "machine-config":
				m.GetAPIRequests.MachineCfgCount.Inc()
				return ok(vmm.GetMachineConfig{})
			case "mmds":
				m.GetAPIRequests.MMDSCount.Inc()
				return ok(vmm.GetMMDS{})
			case "hotplug":
				if s, _ := t.next(); s == "memory" {
					m.GetAPIRequests.HotplugMemoryCount.Inc()
					return ok(vmm.GetMemoryHotplugStatus{})
				}
				return nil, invalidPathMethod(first, method)
			case "ember":
				if s, _ := t.next(); s == "state" {
					return ok(vmm.GetEmberState{})
				}
				return nil, invalidPathMethod(first, method)
			}
			return nil, invalidPathMethod(first, method)
		}
		return nil, methodError(method)

	case "PUT":
		if !has {
			return nil, methodError(method)
		}
		switch first {
		case "actions":
			return parsePutActions(body, m)
		case "balloon":
			var c vmconfig.BalloonDeviceConfig
			if err := decode(body, &c); err != nil {
				return nil, err
			}
			return ok(vmm.SetBalloon{Config: c})
		case "boot-source":
			m.PutAPIRequests.BootSourceCount.Inc()
			var c vmconfig.BootSourceConfig
			if err := decode(body, &c); err != nil {
				m.PutAPIRequests.BootSourceFails.Inc()
				return nil, err
			}
			return ok(vmm.ConfigureBootSource{Config: c})
		case "cpu-config":
			m.PutAPIRequests.CPUCfgCount.Inc()
			tmpl, err := vmconfig.ParseCPUTemplate(body)
			if err != nil {
				m.PutAPIRequests.CPUCfgFails.Inc()
				return nil, serdeError(err)
			}
			return ok(vmm.PutCPUConfig{Template: tmpl})
		case "drives":
			return parsePutDrive(body, t, m)
		case "pmem":
			return parsePutPmem(body, t, m)
		case "logger":
			m.PutAPIRequests.LoggerCount.Inc()
			var c vmconfig.LoggerConfig
			if err := decode(body, &c); err != nil {
				m.PutAPIRequests.LoggerFails.Inc()
				return nil, err
			}
			return ok(vmm.ConfigureLogger{Config: c})
		case "serial":
			m.PutAPIRequests.SerialCount.Inc()
			var c vmconfig.SerialConfig
			if err := decode(body, &c); err != nil {
				m.PutAPIRequests.SerialFails.Inc()
				return nil, err
			}
			return ok(vmm.ConfigureSerial{Config: c})
		case "machine-config":
			m.PutAPIRequests.MachineCfgCount.Inc()
			var c vmconfig.MachineConfig
			if err := decode(body, &c); err != nil {
				m.PutAPIRequests.MachineCfgFails.Inc()
				return nil, err
			}
			p := &parsed{action: vmm.UpdateMachineConfig{Update: vmconfig.UpdateFromPut(c)}}
			if c.CPUTemplate != nil {
				m.DeprecatedAPI.DeprecatedHTTPAPICalls.Inc()
				p.deprecation = "PUT /machine-config: cpu_template field is deprecated."
			}
			return p, nil
		case "metrics":
			m.PutAPIRequests.MetricsCount.Inc()
			var c vmconfig.MetricsConfig
			if err := decode(body, &c); err != nil {
				m.PutAPIRequests.MetricsFails.Inc()
				return nil, err
			}
			return ok(vmm.ConfigureMetrics{Config: c})
		case "mmds":
			return parsePutMMDS(body, t, m)
		case "network-interfaces":
			return parsePutNet(body, t, m)
		case "snapshot":
			return parsePutSnapshot(body, t, m)
		case "vsock":
			m.PutAPIRequests.VsockCount.Inc()
			var c vmconfig.VsockDeviceConfig
			if err := decode(body, &c); err != nil {
				m.PutAPIRequests.VsockFails.Inc()
				return nil, err
			}
			p := &parsed{action: vmm.SetVsock{Config: c}}
			if c.VsockID != nil {
				m.DeprecatedAPI.DeprecatedHTTPAPICalls.Inc()
				p.deprecation = "PUT /vsock: vsock_id field is deprecated."
			}
			return p, nil
		case "entropy":
			var c vmconfig.EntropyDeviceConfig
			if err := decode(body, &c); err != nil {
				return nil, err
			}
			return ok(vmm.SetEntropy{Config: c})
		case "hotplug":
			if s, _ := t.next(); s == "memory" {
				m.PutAPIRequests.HotplugMemoryCount.Inc()
				var c vmconfig.MemoryHotplugConfig
				c.BlockSizeMiB, c.SlotSizeMiB = vmconfig.DefaultBlockSizeMiB, vmconfig.DefaultSlotSizeMiB
				if err := decode(body, &c); err != nil {
					m.PutAPIRequests.HotplugMemoryFails.Inc()
					return nil, err
				}
				return ok(vmm.SetMemoryHotplug{Config: c})
			}
		}
		return nil, invalidPathMethod(first, method)

	case "PATCH":
		if first == "balloon" {
			return parsePatchBalloon(body, t)
		}
		if !has {
			return nil, methodError(method)
		}
		switch first {
		case "drives":
			m.PatchAPIRequests.DriveCount.Inc()
			id, err := checkedID(t.next())
			if err != nil {
				if err == errEmptyID {
					m.PatchAPIRequests.DriveFails.Inc()
				}
				return nil, err
			}
			var c vmconfig.BlockDeviceUpdateConfig
			if err := decode(body, &c); err != nil {
				m.PatchAPIRequests.DriveFails.Inc()
				return nil, err
			}
			if id != c.DriveID {
				m.PatchAPIRequests.DriveFails.Inc()
				return nil, genericError("The id from the path does not match the id from the body!")
			}
			return ok(vmm.UpdateDrive{Config: c})
		case "machine-config":
			m.PatchAPIRequests.MachineCfgCount.Inc()
			var c vmconfig.MachineConfigUpdate
			if err := decode(body, &c); err != nil {
				m.PatchAPIRequests.MachineCfgFails.Inc()
				return nil, err
			}
			if c.Empty() {
				return nil, methodError(method)
			}
			p := &parsed{action: vmm.UpdateMachineConfig{Update: c}}
			if c.CPUTemplate != nil {
				m.DeprecatedAPI.DeprecatedHTTPAPICalls.Inc()
				p.deprecation = "PATCH /machine-config: cpu_template field is deprecated."
			}
			return p, nil
		case "mmds":
			m.PatchAPIRequests.MMDSCount.Inc()
			v, err := strictjson.ParseValue(body)
			if err != nil {
				m.PatchAPIRequests.MMDSFails.Inc()
				return nil, serdeError(err)
			}
			return ok(vmm.PatchMMDS{Value: v})
		case "network-interfaces":
			m.PatchAPIRequests.NetworkCount.Inc()
			id, err := checkedID(t.next())
			if err != nil {
				if err == errEmptyID {
					m.PatchAPIRequests.NetworkCount.Inc()
				}
				return nil, err
			}
			var c vmconfig.NetworkInterfaceUpdateConfig
			if err := decode(body, &c); err != nil {
				m.PatchAPIRequests.NetworkFails.Inc()
				return nil, err
			}
			if id != c.IfaceID {
				m.PatchAPIRequests.NetworkCount.Inc()
				return nil, genericError(fmt.Sprintf("The id from the path [%s] does not match the id from the body [%s]!", id, c.IfaceID))
			}
			return ok(vmm.UpdateNet{Config: c})
		case "pmem":
			m.PatchAPIRequests.PmemCount.Inc()
			id, err := checkedID(t.next())
			if err != nil {
				if err == errEmptyID {
					m.PatchAPIRequests.PmemFails.Inc()
				}
				return nil, err
			}
			var c vmconfig.PmemDeviceUpdateConfig
			if err := decode(body, &c); err != nil {
				m.PatchAPIRequests.PmemFails.Inc()
				return nil, err
			}
			if id != c.ID {
				m.PatchAPIRequests.PmemFails.Inc()
				return nil, genericError("The id from the path does not match the id from the body!")
			}
			return ok(vmm.UpdatePmem{Config: c})
		case "vm":
			var c vmconfig.VMState
			if err := decode(body, &c); err != nil {
				return nil, err
			}
			if c.State == "Paused" {
				return ok(vmm.Pause{})
			}
			return ok(vmm.Resume{})
		case "hotplug":
			if s, _ := t.next(); s == "memory" {
				m.PatchAPIRequests.HotplugMemoryCount.Inc()
				var c vmconfig.MemoryHotplugSizeUpdate
				if err := decode(body, &c); err != nil {
					m.PatchAPIRequests.HotplugMemoryFails.Inc()
					return nil, err
				}
				return ok(vmm.UpdateMemoryHotplug{Config: c})
			}
		}
		return nil, invalidPathMethod(first, method)

	case "DELETE":
		if has {
			switch first {
			case "drives", "pmem", "network-interfaces":
				return nil, methodError(method)
			}
			return nil, methodError(method)
		}
		kind := map[string]string{"drives": "Block", "pmem": "Pmem", "network-interfaces": "Net"}[first]
		if kind == "" {
			return nil, invalidPathMethod(first, method)
		}
		id, err := checkedID(t.next())
		if err != nil {
			return nil, err
		}
		return ok(vmm.HotUnplug{Kind: kind, ID: id})
	}
	return nil, invalidPathMethod(first, method)
}

func parsePutActions(body []byte, m *metrics.Metrics) (*parsed, *requestError) {
	m.PutAPIRequests.ActionsCount.Inc()
	var c vmconfig.ActionBody
	if err := decode(body, &c); err != nil {
		m.PutAPIRequests.ActionsFails.Inc()
		return nil, err
	}
	switch c.ActionType {
	case "FlushMetrics":
		return &parsed{action: vmm.FlushMetrics{}}, nil
	case "InstanceStart":
		return &parsed{action: vmm.StartMicroVM{}}, nil
	}
	return &parsed{action: vmm.SendCtrlAltDel{}}, nil
}

func parseGetBalloon(t *tokens) (*parsed, *requestError) {
	s, ok := t.next()
	switch {
	case !ok:
		return &parsed{action: vmm.GetBalloonConfig{}}, nil
	case s == "statistics":
		return &parsed{action: vmm.GetBalloonStats{}}, nil
	case s == "hinting":
		h, ok := t.next()
		switch {
		case !ok:
			return nil, genericError("Unrecognized GET request path `/hinting/`.")
		case h == "status":
			return &parsed{action: vmm.GetHintingStatus{}}, nil
		}
		return nil, genericError("Unrecognized GET request path `/hinting/" + h + "`.")
	}
	return nil, genericError("Unrecognized GET request path `" + s + "`.")
}

func parsePatchBalloon(body []byte, t *tokens) (*parsed, *requestError) {
	s, _ := t.next()
	switch {
	case s == "statistics" && body != nil:
		var c vmconfig.BalloonUpdateStatsConfig
		if err := decode(body, &c); err != nil {
			return nil, err
		}
		return &parsed{action: vmm.UpdateBalloonStats{Config: c}}, nil
	case s == "hinting":
		h, ok := t.next()
		switch {
		case !ok:
			return nil, genericError("Unrecognized PATCH request path `/hinting/`.")
		case h == "start":
			cmd := vmconfig.StartHintingCmd{AcknowledgeOnStop: true}
			if len(body) > 0 {
				if err := decode(body, &cmd); err != nil {
					return nil, err
				}
			}
			return &parsed{action: vmm.StartHinting{Cmd: cmd}}, nil
		case h == "stop":
			return &parsed{action: vmm.StopHinting{}}, nil
		}
		return nil, genericError("Unrecognized PATCH request path `/hinting/" + h + "`.")
	case body != nil:
		var c vmconfig.BalloonUpdateConfig
		if err := decode(body, &c); err != nil {
			return nil, err
		}
		return &parsed{action: vmm.UpdateBalloon{Config: c}}, nil
	}
	return nil, methodError("PATCH")
}

func parsePutDrive(body []byte, t *tokens, m *metrics.Metrics) (*parsed, *requestError) {
	m.PutAPIRequests.DriveCount.Inc()
	s, present := t.next()
	if !present {
		m.PutAPIRequests.DriveFails.Inc()
		return nil, errEmptyID
	}
	id, err := checkedID(s, present)
	if err != nil {
		return nil, err
	}
	var c vmconfig.BlockDeviceConfig
	c.CacheType = vmconfig.CacheUnsafe
	if err := decode(body, &c); err != nil {
		m.PutAPIRequests.DriveFails.Inc()
		return nil, err
	}
	if id != c.DriveID {
		m.PutAPIRequests.DriveFails.Inc()
		return nil, genericError("The id from the path does not match the id from the body!")
	}
	return &parsed{action: vmm.InsertDrive{Config: c}}, nil
}

func parsePutPmem(body []byte, t *tokens, m *metrics.Metrics) (*parsed, *requestError) {
	m.PutAPIRequests.PmemCount.Inc()
	s, present := t.next()
	if !present {
		m.PutAPIRequests.PmemFails.Inc()
		return nil, errEmptyID
	}
	id, err := checkedID(s, present)
	if err != nil {
		return nil, err
	}
	var c vmconfig.PmemConfig
	if err := decode(body, &c); err != nil {
		m.PutAPIRequests.PmemFails.Inc()
		return nil, err
	}
	if id != c.ID {
		m.PutAPIRequests.PmemFails.Inc()
		return nil, genericError("The id from the path does not match the id from the body!")
	}
	return &parsed{action: vmm.InsertPmem{Config: c}}, nil
}

func parsePutNet(body []byte, t *tokens, m *metrics.Metrics) (*parsed, *requestError) {
	m.PutAPIRequests.NetworkCount.Inc()
	s, present := t.next()
	if !present {
		m.PutAPIRequests.NetworkFails.Inc()
		return nil, errEmptyID
	}
	id, err := checkedID(s, present)
	if err != nil {
		return nil, err
	}
	var c vmconfig.NetworkInterfaceConfig
	if err := decode(body, &c); err != nil {
		m.PutAPIRequests.NetworkFails.Inc()
		return nil, err
	}
	if id != c.IfaceID {
		m.PutAPIRequests.NetworkFails.Inc()
		return nil, genericError(fmt.Sprintf("The id from the path [%s] does not match the id from the body [%s]!", id, c.IfaceID))
	}
	return &parsed{action: vmm.InsertNet{Config: c}}, nil
}

func parsePutMMDS(body []byte, t *tokens, m *metrics.Metrics) (*parsed, *requestError) {
	m.PutAPIRequests.MMDSCount.Inc()
	s, present := t.next()
	switch {
	case !present:
		v, err := strictjson.ParseValue(body)
		if err != nil {
			m.PutAPIRequests.MMDSFails.Inc()
			return nil, serdeError(err)
		}
		return &parsed{action: vmm.PutMMDS{Value: v}}, nil
	case s == "config":
		var c vmconfig.MMDSConfig
		if err := decode(body, &c); err != nil {
			m.PutAPIRequests.MMDSFails.Inc()
			return nil, err
		}
		p := &parsed{action: vmm.SetMMDSConfig{Config: c}}
		if c.Version == "" || c.Version == vmconfig.MMDSV1 {
			m.DeprecatedAPI.DeprecatedHTTPAPICalls.Inc()
			p.deprecation = "PUT /mmds/config: V1 is deprecated. Use V2 instead."
		}
		return p, nil
	}
	m.PutAPIRequests.MMDSFails.Inc()
	return nil, genericError("Unrecognized PUT request path `" + s + "`.")
}

// Snapshot load messages for the memory source, wrapped as serde errors.
const (
	loadMissingField = "missing field: either `mem_backend` or `mem_file_path` is required"
	loadTooMany      = "too many fields: either `mem_backend` or `mem_file_path` exclusively is required"
	loadDeprecation  = "PUT /snapshot/load: mem_file_path and enable_diff_snapshots fields are deprecated."
)

func parsePutSnapshot(body []byte, t *tokens, m *metrics.Metrics) (*parsed, *requestError) {
	s, present := t.next()
	switch {
	case !present:
		return nil, genericError("Missing snapshot operation type.")
	case s == "create":
		var c vmconfig.CreateSnapshotParams
		c.SnapshotType = vmconfig.SnapshotFull
		if err := decode(body, &c); err != nil {
			return nil, err
		}
		return &parsed{action: vmm.CreateSnapshot{Params: c}}, nil
	case s == "load":
		var c vmconfig.LoadSnapshotConfig
		c.HugePages = "Snapshot"
		if err := decode(body, &c); err != nil {
			return nil, err
		}
		switch {
		case c.MemBackend != nil && c.MemFilePath != nil:
			return nil, serdeError(strictjson.Custom(loadTooMany))
		case c.MemBackend == nil && c.MemFilePath == nil:
			return nil, serdeError(strictjson.Custom(loadMissingField))
		}
		p := vmconfig.LoadSnapshotParams{
			SnapshotPath:     string(c.SnapshotPath),
			TrackDirtyPages:  c.EnableDiffSnapshots || c.TrackDirtyPages,
			ResumeVM:         c.ResumeVM,
			NetworkOverrides: c.NetworkOverrides,
			VsockOverride:    c.VsockOverride,
			ClockRealtime:    c.ClockRealtime,
			HugePages:        c.HugePages,
		}
		if c.MemBackend != nil {
			p.MemBackend = *c.MemBackend
		} else {
			p.MemBackend = vmconfig.MemBackendConfig{BackendPath: *c.MemFilePath, BackendType: vmconfig.MemBackendFile}
		}
		out := &parsed{action: vmm.LoadSnapshot{Params: p}}
		if c.MemFilePath != nil || c.EnableDiffSnapshots {
			m.DeprecatedAPI.DeprecatedHTTPAPICalls.Inc()
			out.deprecation = loadDeprecation
		}
		return out, nil
	}
	return nil, invalidPathMethod("/snapshot/"+s, "PUT")
}

func methodDebug(method string) string {
	switch method {
	case "GET":
		return "Get"
	case "PUT":
		return "Put"
	case "PATCH":
		return "Patch"
	case "DELETE":
		return "Delete"
	}
	return method
}
