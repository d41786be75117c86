// Package conformance is ember's end-to-end conformance suite: it builds the
// real ember binary once (TestMain), starts it as a process with an API
// socket in a temporary directory and replays requests over that Unix
// socket, comparing the answers with Firecracker's byte for byte (status
// line, headers and body where Firecracker's answer is fully known; status
// and fault_message otherwise), plus exit codes, stderr and log lines.
//
// Files by theme: wire (HTTP transport), matrix (every endpoint before and
// after boot, on one shared booted VM, which also serves the post-boot
// errors, metrics and log checks), errors (every error text), golden
// (fresh-process and full-configuration answers in testdata/), cmdline
// (flags, --config-file, --metadata, logging) and robustness (bad input
// never takes the API down).
//
// Run as root with qemu-system-x86_64 installed: go test ./tests/conformance/
// Tests that need a guest skip loudly without QEMU; tests that need tap
// devices skip without root. -update rewrites the golden files from
// ember's answers; review the diff against Firecracker's behaviour.
//
// Invariants: every test starts its own ember processes and removes
// everything it created (processes, network namespaces, files); taps and
// guest traffic live only in network namespaces the tests create. Expected
// answers are Firecracker's: where ember differs the test fails rather
// than being bent to ember's output. Texts naming the backend ("The qemu
// backend does not support ...") are ember's own and are checked as such.
package conformance
