package syserr

import (
	"fmt"
	"os"
	"syscall"
	"testing"
)

func TestDisplay(t *testing.T) {
	_, openErr := os.Open("/nonexistent/ember-syserr-test")
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"enoent via os", openErr, "No such file or directory (os error 2)"},
		{"eacces", syscall.EACCES, "Permission denied (os error 13)"},
		{"ebusy wrapped", fmt.Errorf("open tap: %w", syscall.EBUSY), "Resource busy (os error 16)"},
		{"enomem", syscall.ENOMEM, "Out of memory (os error 12)"},
		{"unknown errno", syscall.Errno(41), "No error information (os error 41)"},
		{"not an errno", fmt.Errorf("plain"), "plain"},
		{"nil", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Display(tt.err); got != tt.want {
				t.Errorf("Display() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDebug(t *testing.T) {
	_, openErr := os.Open("/nonexistent/ember-syserr-test")
	tests := []struct {
		err  error
		want string
	}{
		{openErr, `Os { code: 2, kind: NotFound, message: "No such file or directory" }`},
		{syscall.EACCES, `Os { code: 13, kind: PermissionDenied, message: "Permission denied" }`},
		{syscall.EADDRINUSE, `Os { code: 98, kind: AddrInUse, message: "Address in use" }`},
		{syscall.Errno(41), `Os { code: 41, kind: Uncategorized, message: "No error information" }`},
	}
	for _, tt := range tests {
		if got := Debug(tt.err); got != tt.want {
			t.Errorf("Debug(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}
