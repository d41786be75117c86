// Package mmds is Firecracker's microVM metadata service: the data store the
// API fills (PUT replaces it, PATCH merges into it as RFC 7396 says) and
// reads back, bounded by a size limit on its compact JSON form, and the
// configuration a guest-facing responder needs (version, IMDS
// compatibility, token key). Values keep serde_json's semantics (sorted keys,
// serde_json's number and string formatting).
package mmds

import (
	"errors"
	"sync"

	"github.com/ember-vmm/ember/internal/strictjson"
)

// Errors with Firecracker's texts.
var (
	// ErrLimitExceeded is answered with 413 by the API.
	ErrLimitExceeded  = errors.New("The MMDS patch request doesn't fit.")
	ErrNotInitialized = errors.New("The MMDS data store is not initialized.")
)

// Store is the metadata data store. It is safe for concurrent use (the API
// writes it while a guest-facing responder reads it).
type Store struct {
	mu          sync.RWMutex
	limit       int
	data        strictjson.Value
	initialized bool
	version     string
	imdsCompat  bool
	aad         string
}

// NewStore returns an empty store whose compact JSON may not exceed limit
// bytes.
func NewStore(limit int) *Store { return &Store{limit: limit, version: "V1"} }

// Put replaces the content.
func (s *Store) Put(v strictjson.Value) error {
	if len(v.Compact()) > s.limit {
		return ErrLimitExceeded
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data, s.initialized = v, true
	return nil
}

// Patch merges v into the content (RFC 7396). It fails before any Put.
func (s *Store) Patch(v strictjson.Value) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.initialized {
		return ErrNotInitialized
	}
	merged := MergePatch(s.data, v)
	if len(merged.Compact()) > s.limit {
		return ErrLimitExceeded
	}
	s.data = merged
	return nil
}

// Value returns the content (null before any Put).
func (s *Store) Value() strictjson.Value {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.data
}

// Configure sets what PUT /mmds/config decides: the version, IMDS
// compatibility, and the instance id that authenticates V2 tokens.
func (s *Store) Configure(version string, imdsCompat bool, aad string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version, s.imdsCompat, s.aad = version, imdsCompat, aad
}

// Config returns the version and IMDS compatibility.
func (s *Store) Config() (version string, imdsCompat bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.version, s.imdsCompat
}

// MergePatch applies an RFC 7396 merge patch: an object patch merges key by
// key (null removes a key), anything else replaces the target.
func MergePatch(target, patch strictjson.Value) strictjson.Value {
	pm, ok := patch.Object()
	if !ok {
		return patch
	}
	tm, ok := target.Object()
	if !ok {
		tm = nil
	}
	out := make([]strictjson.Member, 0, len(tm)+len(pm))
	out = append(out, tm...)
	for _, p := range pm {
		i := indexOf(out, p.Key)
		if p.Value.IsNull() {
			if i >= 0 {
				out = append(out[:i], out[i+1:]...)
			}
			continue
		}
		var cur strictjson.Value
		if i >= 0 {
			cur = out[i].Value
		}
		merged := MergePatch(cur, p.Value)
		if i >= 0 {
			out[i].Value = merged
		} else {
			out = append(out, strictjson.Member{Key: p.Key, Value: merged})
		}
	}
	return strictjson.ObjectValue(out)
}

func indexOf(ms []strictjson.Member, key string) int {
	for i, m := range ms {
		if m.Key == key {
			return i
		}
	}
	return -1
}
