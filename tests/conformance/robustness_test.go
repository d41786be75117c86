package conformance

// Bad input never takes the API down: after every malformed request,
// oversized body, invalid UTF-8, deeply nested JSON or out-of-range
// number, a fresh connection still gets GET / answered. Where Firecracker's
// answer is known exactly it is checked too.

import (
	"crypto/rand"
	"net"
	"strings"
	"testing"
	"time"
)

func TestRobustness(t *testing.T) {
	t.Parallel()
	e := startEmber(t, "--http-api-max-payload-size", "4096")

	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	deepObj := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	apiCases := []apiCase{
		{"127 levels of nesting", "PUT", "/mmds", deep(127), ok204()},
		{"128 levels of nesting", "PUT", "/mmds", deep(128), serde("recursion limit exceeded at line 1 column 128")},
		{"600 levels of nesting", "PUT", "/mmds", deep(600), serde("recursion limit exceeded at line 1 column 128")},
		{"nested objects", "PUT", "/mmds", deepObj(200), serde("recursion limit exceeded at line 1 column 636")},
		{"nesting in a typed body", "PUT", "/machine-config", `{"vcpu_count":` + deep(300) + `}`, serde("invalid type: sequence, expected u8 at line 1 column 14")},
		{"invalid UTF-8 in a string", "PUT", "/boot-source", "{\"kernel_image_path\": \"a\xffb\"}", serde("invalid unicode code point at line 1 column 27")},
		{"invalid UTF-8 in a key", "PUT", "/boot-source", "{\"kernel_\xff\": \"a\"}", serde("invalid unicode code point at line 1 column 11")},
		{"invalid UTF-8 outside strings", "PUT", "/mmds", "[1, \xff]", serde("expected value at line 1 column 5")},
		{"invalid UTF-8 in MMDS data", "PUT", "/mmds", "{\"a\":\"\xc3\x28\"}", expectation{status: 400, faultPrefix: serdePrefix + "invalid unicode code point"}},
		{"negative u64", "PUT", "/drives/x", `{"drive_id":"x","is_root_device":false,"rate_limiter":{"ops":{"size":-1,"refill_time":2}}}`,
			serde("invalid value: integer `-1`, expected u64 at line 1 column 71")},
		{"u64 overflow", "PUT", "/drives/x", `{"drive_id":"x","is_root_device":false,"rate_limiter":{"ops":{"size":18446744073709551616,"refill_time":2}}}`,
			serde("invalid type: floating point `1.8446744073709552e+19`, expected u64 at line 1 column 89")},
		{"u32 overflow", "PUT", "/balloon", `{"amount_mib":4294967296,"deflate_on_oom":true}`, serde("invalid value: integer `4294967296`, expected u32 at line 1 column 24")},
		{"number out of range", "PUT", "/mmds", `[1e400]`, serde("number out of range at line 1 column 6")},
		{"huge integer in MMDS data is a float", "PUT", "/mmds", `[18446744073709551616]`, ok204()},
		{"", "GET", "/mmds", "", ok200(`[1.8446744073709552e+19]`)},
		{"wrong type for an object", "PUT", "/machine-config", `"machine"`, serde(`invalid type: string "machine", expected struct MachineConfig at line 1 column 9`)},
		{"empty body", "PUT", "/machine-config", `   `, serde("EOF while parsing a value at line 1 column 3")},
		{"control character in a string", "PUT", "/mmds", "[\"a\x01\"]", serde("control character (\\u0000-\\u001F) found while parsing a string at line 1 column 4")},
		{"lone surrogate", "PUT", "/mmds", `["\ud800"]`, serde("unexpected end of hex escape at line 1 column 9")},
		// The MMDS limit defaults to the payload limit (4096 here): a PATCH
		// can grow the store past it.
		{"", "PUT", "/mmds", `{"k":"` + strings.Repeat("v", 3990) + `"}`, ok204()},
		{"PATCH past the default MMDS limit", "PATCH", "/mmds", `{"j":"` + strings.Repeat("w", 200) + `"}`, tooLarge("MMDS limit exceeded error: The MMDS patch request doesn't fit.")},
	}
	for _, tc := range apiCases {
		c := e.client()
		r := c.do(tc.method, tc.path, tc.body)
		tc.want.check(t, tc.name+" ("+reqString(tc.method, tc.path, tc.body)+")", r)
		c.close()
		expectServing(t, e)
	}

	if !e.hasLog(`with body "inconvertible to UTF-8".`) {
		t.Errorf("a body that is not UTF-8 is not logged as Firecracker does (\"inconvertible to UTF-8\")")
	}

	raw := []struct {
		name string
		req  string
	}{
		{"garbage", "\x00\x01\x02\xff\xfe garbage \r\n\r\n"},
		{"only CRLFs", "\r\n\r\n\r\n\r\n"},
		{"NUL in the target", "GET /\x00 HTTP/1.1\r\n\r\n"},
		{"oversized body", "PUT /mmds HTTP/1.1\r\nContent-Length: 4097\r\n\r\n" + strings.Repeat("x", 4097)},
		{"huge Content-Length", "PUT /mmds HTTP/1.1\r\nContent-Length: 4294967295\r\n\r\n"},
		{"body longer than declared", "PUT /mmds HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET / HTTP/1.1\r\n\r\n"},
		{"many headers", "GET / HTTP/1.1\r\n" + strings.Repeat("X-A: b\r\n", 500) + "\r\n"},
		{"long header", "GET / HTTP/1.1\r\nX-Long: " + strings.Repeat("a", 5000) + "\r\n\r\n"},
		{"long target", "GET /" + strings.Repeat("a", 5000) + " HTTP/1.1\r\n\r\n"},
		{"bare LF line endings", "GET / HTTP/1.1\n\n"},
		{"chunked body", "PUT /mmds HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{}{}\r\n0\r\n\r\n"},
	}
	for _, tc := range raw {
		c := dialRaw(t, e.sock)
		c.send(tc.req)
		// Whatever the answer, the server must stay up.
		_, _ = c.read(500 * time.Millisecond)
		c.close()
		expectServing(t, e)
		if t.Failed() {
			t.Fatalf("server unusable after %s", tc.name)
		}
	}

	t.Run("random bytes", func(t *testing.T) {
		buf := make([]byte, 64<<10)
		for i := 0; i < 4; i++ {
			if _, err := rand.Read(buf); err != nil {
				t.Fatal(err)
			}
			c, err := net.Dial("unix", e.sock)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			_, _ = c.Write(buf)
			c.Close()
			expectServing(t, e)
		}
	})

	t.Run("client leaves mid-request", func(t *testing.T) {
		for i := 0; i < 20; i++ {
			c, err := net.Dial("unix", e.sock)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = c.Write([]byte("PUT /mmds HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"a\":"))
			c.Close()
		}
		expectServing(t, e)
	})

	t.Run("connection churn", func(t *testing.T) {
		// More connections over time than the limit, never more than ten
		// at once: every one is served.
		for i := 0; i < 50; i++ {
			c := e.client()
			if r := c.get("/version"); r.status != 200 {
				t.Fatalf("connection %d: %s", i, r)
			}
			c.close()
		}
	})
}
