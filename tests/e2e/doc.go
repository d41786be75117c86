// Package e2e is ember's end-to-end suite for the qemu backend. It builds the
// real ember binary, starts it as a process with its own --api-sock in a
// temporary directory, configures and boots the test guest
// (internal/testguest) over that Unix socket exactly as a Firecracker client
// does, and judges ember by what a client can see: API answers, the guest
// console on stdout (or serial_out_path), the log lines, the metrics file,
// the exit code and what is left behind on the host.
//
// Invariants: every test starts its own ember processes and removes what it
// created (processes, network namespaces, files), also when it fails. At
// most two VMs boot at a time, each with 1 vCPU. Network traffic only ever
// happens inside network namespaces the tests create; no test address or
// tap exists outside one. Expected behaviour is Firecracker's: where ember
// differs, the test fails rather than being bent to ember's output.
//
// The package has no non-test code besides this comment.
package e2e
