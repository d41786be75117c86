package guestmem

import "fmt"

func sscanRange(line string, lo, hi *uintptr) (int, error) {
	return fmt.Sscanf(line, "%x-%x", lo, hi)
}
