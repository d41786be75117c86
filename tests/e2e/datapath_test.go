package e2e

import "testing"

// TestMMDS runs the metadata service exchange against the qemu backend,
// where an MMDS interface runs on ember's virtio-net model over vhost-user.
func TestMMDS(t *testing.T) { testMMDS(t) }

// TestDriveRateLimiter runs the drive rate limiter check against the qemu
// backend, where a limited drive runs on ember's virtio-blk model over
// vhost-user.
func TestDriveRateLimiter(t *testing.T) { testDriveRateLimiter(t) }
