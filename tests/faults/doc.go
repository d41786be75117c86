// Package faults tests ember, the real binary, under faults and concurrent
// load: a guest kernel panic, full file systems under the metrics, log and
// snapshot files, a tap deleted under a running guest, API clients that
// disconnect mid-request, 64 clients racing through boot, pause/resume and
// shutdown, and the API socket's permissions. After every fault it checks
// that nothing is left behind: no QEMU or other child process, no runtime
// directory (which holds ember's temporary files and sockets), no tap
// ember created.
//
// Invariants: every test starts its own ember processes and removes what it
// created (processes, network namespaces, mounts, files), also when it
// fails. At most two VMs boot at a time. Network traffic only happens
// inside network namespaces the tests create. Expected behaviour is
// Firecracker's; where ember differs, the test fails.
//
// Knobs: EMBER_FAULTS_BIN runs a prebuilt ember instead of building
// cmd/ember; EMBER_RACE=1 builds it with the race detector. A race report
// on any ember's stderr fails the test that started it, whatever the build.
//
// The package has no non-test code besides this comment.
package faults
