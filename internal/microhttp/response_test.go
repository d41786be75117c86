package microhttp

import (
	"errors"
	"testing"
)

func TestResponseAppendTo(t *testing.T) {
	const head = "Server: Firecracker API\r\nConnection: keep-alive\r\n"
	tests := []struct {
		name    string
		r       Response
		version string
		want    string
	}{
		{"no content", Response{Status: 204}, HTTP11, "HTTP/1.1 204 \r\n" + head + "\r\n"},
		{"continue", Response{Status: 100}, HTTP10, "HTTP/1.0 100 \r\n" + head + "\r\n"},
		{"ok json", Response{Status: 200, Body: []byte(`{"a":1}`)}, HTTP11,
			"HTTP/1.1 200 \r\n" + head + "Content-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}"},
		{"empty body announced", Response{Status: 200}, HTTP11,
			"HTTP/1.1 200 \r\n" + head + "Content-Type: application/json\r\nContent-Length: 0\r\n\r\n"},
		{"204 with an empty body set", Response{Status: 204, Body: []byte{}}, HTTP11,
			"HTTP/1.1 204 \r\n" + head + "Content-Type: application/json\r\nContent-Length: 0\r\n\r\n"},
		{"mmds text", Response{Status: 405, Body: []byte("Not allowed HTTP method."), ContentType: MediaText, Allow: []string{"GET", "PUT"}}, HTTP10,
			"HTTP/1.0 405 \r\n" + head + "Allow: GET, PUT\r\nContent-Type: text/plain\r\nContent-Length: 24\r\n\r\nNot allowed HTTP method."},
		{"allow then deprecation", Response{Status: 400, Body: []byte("x"), Allow: []string{"GET"}, Deprecation: true}, HTTP11,
			"HTTP/1.1 400 \r\n" + head + "Allow: GET\r\nDeprecation: true\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\nx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("keep")
			got := tt.r.AppendTo(prefix, tt.version)
			if string(got) != "keep"+tt.want {
				t.Errorf("got  %q\nwant %q", got, "keep"+tt.want)
			}
		})
	}
}

func TestErrorResponseBody(t *testing.T) {
	got := string(errorResponse(errors.New(`a "quoted" text`)).Body)
	want := "{ \"error\": \"a \"quoted\" text\nAll previous unanswered requests will be dropped.\" }"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
