package mmio_test

import "github.com/ember-vmm/ember/internal/logger"

// vtLog discards: the transport's warnings are Firecracker's texts, checked
// by reading, not here.
var vtLog = logger.Discard
