package bootargs

import (
	"errors"
	"strings"
	"testing"
)

func TestParseAndInsert(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		inserts []string
		want    string
		wantErr error
	}{
		{"default", Default, []string{"pci=off", "root=/dev/vda", "rw"}, Default + " pci=off root=/dev/vda rw", nil},
		{"init args stay last", "console=ttyS0 init=/bin/cat -- /etc/os-release", []string{"pci=off"},
			"console=ttyS0 init=/bin/cat pci=off -- /etc/os-release", nil},
		{"quoted separator is not a split", `a="x -- y" -- z`, []string{"b"}, `a="x -- y" b -- z`, nil},
		{"trims", "  a  ", []string{" b "}, "a b", nil},
		{"empty", "", nil, "", nil},
		{"only init args", " -- x", nil, "", ErrNoBootArgs},
		{"non-printable insert", "a", []string{"b\x01"}, "", ErrInvalidASCII},
		{"nul in user args", "a\x00b", nil, "", ErrNullTerminator},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.raw, MaxSize)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			for _, s := range tt.inserts {
				if err = c.Insert(s); err != nil {
					break
				}
			}
			got := ""
			if err == nil {
				got, err = c.String()
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCapacity(t *testing.T) {
	// 2047 characters plus the NUL fit exactly; one more does not.
	if _, err := Parse(strings.Repeat("a", 2047), MaxSize); err != nil {
		t.Fatalf("2047 bytes: %v", err)
	}
	if _, err := Parse(strings.Repeat("a", 2048), MaxSize); !errors.Is(err, ErrInvalidCapacity) {
		t.Fatalf("2048 bytes: err = %v", err)
	}
	// 2045 + space + "b" + NUL = 2048 bytes: fits; a further insert does not.
	c, _ := Parse(strings.Repeat("a", 2045), MaxSize)
	if err := c.Insert("b"); err != nil {
		t.Fatalf("insert to capacity: %v", err)
	}
	if err := c.Insert("c"); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("insert past capacity: err = %v", err)
	}
	if _, err := Parse("x", 0); !errors.Is(err, ErrInvalidCapacity) {
		t.Fatalf("zero capacity: err = %v", err)
	}
}

func TestRoot(t *testing.T) {
	if got := strings.Join(Root("", false), " "); got != "root=/dev/vda rw" {
		t.Errorf("got %q", got)
	}
	if got := strings.Join(Root("abc-1", true), " "); got != "root=PARTUUID=abc-1 ro" {
		t.Errorf("got %q", got)
	}
}
