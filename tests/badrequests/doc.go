// Package badrequests replays a corpus of invalid API requests against the
// real ember binary over its API socket and checks, byte for byte, that each
// gets the answer Firecracker gives: malformed HTTP, bodies that are not
// JSON or not of the endpoint's shape, numbers out of range, values the VMM
// refuses, and requests sent in the wrong state (before or after the
// microVM starts). It also floods one process with bad requests and checks
// that it keeps serving and that its memory stays flat.
//
// The corpus lives in testdata/*.txt (the format is described in
// corpus_test.go). Expected answers come from Firecracker's behaviour (the
// project's reference notes, micro_http's and Firecracker's sources, and
// serde_json's messages for Firecracker's body types), never from ember's
// output. A case where ember differs fails the test unless it is listed,
// with a reason, in knownDivergences.
//
// Invariants: every request goes on a fresh connection; each corpus file
// runs on its own ember process, cases in file order; the processes and
// files a test creates are removed when it ends.
//
// The package has no non-test code besides this comment.
package badrequests
