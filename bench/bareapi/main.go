// Command bareapi is the baseline ember's API is measured against: the
// least a Go program must do to serve the two requests the benchmark sends,
// with the standard library's net/http on a Unix socket.
//
// GET / answers 200 with a small instance-info JSON; PUT /machine-config
// decodes the JSON body strictly (unknown fields refused), checks the values
// and stores them, then answers 204. Anything else is a 400 with a
// fault_message, as Firecracker answers. It prints "API server started." on
// stdout once the socket listens, the line ember prints at that point, so
// start-up is timed the same way for both.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
)

type machineConfig struct {
	VCPUCount       *int    `json:"vcpu_count"`
	MemSizeMiB      *int    `json:"mem_size_mib"`
	SMT             *bool   `json:"smt,omitempty"`
	TrackDirtyPages *bool   `json:"track_dirty_pages,omitempty"`
	HugePages       *string `json:"huge_pages,omitempty"`
	CPUTemplate     *string `json:"cpu_template,omitempty"`
}

type instanceInfo struct {
	ID         string `json:"id"`
	State      string `json:"state"`
	VMMVersion string `json:"vmm_version"`
	AppName    string `json:"app_name"`
}

type server struct {
	mu     sync.Mutex
	config machineConfig
}

func fault(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]string{"fault_message": msg})
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/":
		b, err := json.Marshal(instanceInfo{ID: "anonymous-instance", State: "Not started", VMMVersion: "1.17.0-dev", AppName: "Firecracker"})
		if err != nil {
			fault(w, err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	case r.Method == http.MethodPut && r.URL.Path == "/machine-config":
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 51200))
		dec.DisallowUnknownFields()
		var mc machineConfig
		if err := dec.Decode(&mc); err != nil {
			fault(w, err.Error())
			return
		}
		if mc.VCPUCount == nil || mc.MemSizeMiB == nil {
			fault(w, "missing field")
			return
		}
		if *mc.VCPUCount < 1 || *mc.VCPUCount > 32 || *mc.MemSizeMiB < 1 {
			fault(w, "The machine config is invalid.")
			return
		}
		s.mu.Lock()
		s.config = mc
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		fault(w, "Invalid request method and/or path: "+r.Method+" "+r.URL.Path+".")
	}
}

func main() {
	sock := flag.String("api-sock", "", "path of the Unix socket to serve on")
	flag.Parse()
	if *sock == "" {
		fmt.Fprintln(os.Stderr, "bareapi: --api-sock is required")
		os.Exit(2)
	}
	ln, err := net.Listen("unix", *sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bareapi:", err)
		os.Exit(1)
	}
	fmt.Println("API server started.")
	if err := http.Serve(ln, &server{}); err != nil {
		fmt.Fprintln(os.Stderr, "bareapi:", err)
		os.Exit(1)
	}
}
