package mmdsnet

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/ember-vmm/ember/internal/logger"
)

// Token lifetimes accepted by PUT /latest/api/token, in seconds.
const (
	MinTokenTTL = 1
	MaxTokenTTL = 21600
)

// maxTokenLen: longer strings are refused without decoding (a token is
// 48 base64 characters).
const maxTokenLen = 70

// token layout: nonce, encrypted expiry, GCM tag.
const (
	nonceLen   = 12
	expiryLen  = 8
	tagLen     = 16
	tokenBytes = nonceLen + expiryLen + tagLen
)

// ErrInvalidTTL classifies a token lifetime outside [MinTokenTTL,
// MaxTokenTTL].
var ErrInvalidTTL = errors.New("invalid token TTL")

type ttlError uint32

func (e ttlError) Error() string {
	return fmt.Sprintf("Invalid time to live value provided for token: %d. Please provide a value between %d and %d.",
		uint32(e), MinTokenTTL, MaxTokenTTL)
}

func (e ttlError) Is(target error) bool { return target == ErrInvalidTTL }

// Clock returns monotonic time since an arbitrary origin. It drives token
// expiry and TCP timers.
type Clock func() time.Duration

var origin = time.Now()

// Monotonic is the default Clock.
func Monotonic() time.Duration { return time.Since(origin) }

// Tokens is the V2 session token authority, shared by every interface
// that serves the same store, as Firecracker shares its. A token is the
// base64 of a random nonce, the AES-256-GCM-sealed expiry (milliseconds
// of Clock, little endian) and the tag, authenticated with
// "microvmid=<instance id>". The key is random per Tokens: tokens do not
// survive the process (nor a snapshot). Safe for concurrent use.
type Tokens struct {
	mu    sync.Mutex
	aead  cipher.AEAD
	aad   []byte
	count uint32 // tokens sealed under the current key
	clock Clock
	log   logger.Log
}

// NewTokens returns an authority for the given instance id. A nil clock
// is Monotonic.
func NewTokens(instanceID string, clock Clock, log logger.Log) (*Tokens, error) {
	if clock == nil {
		clock = Monotonic
	}
	t := &Tokens{aad: []byte("microvmid=" + instanceID), clock: clock, log: log}
	if err := t.rekey(); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Tokens) rekey() error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("token key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return fmt.Errorf("token key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return fmt.Errorf("token key: %w", err)
	}
	t.aead, t.count = aead, 0
	return nil
}

func (t *Tokens) nowMillis() uint64 { return uint64(t.clock() / time.Millisecond) }

// Generate returns a token valid for ttl seconds; a ttl out of range is
// an error wrapping ErrInvalidTTL whose text is Firecracker's.
func (t *Tokens) Generate(ttl uint32) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.count == math.MaxUint32 {
		// A GCM key must not seal more than 2^32 random nonces; a new key
		// invalidates every token, as in Firecracker.
		if err := t.rekey(); err != nil {
			return "", err
		}
		t.log.Warnf("The limit of tokens generated under current MMDS token authority has been reached. MMDS's token authority entity has been reseeded and all previously created tokens are now invalid.")
	}
	if ttl < MinTokenTTL || ttl > MaxTokenTTL {
		return "", ttlError(ttl)
	}
	var raw [tokenBytes]byte
	if _, err := rand.Read(raw[:nonceLen]); err != nil {
		return "", fmt.Errorf("token nonce: %w", err)
	}
	var expiry [expiryLen]byte
	binary.LittleEndian.PutUint64(expiry[:], t.nowMillis()+uint64(ttl)*1000)
	t.aead.Seal(raw[nonceLen:nonceLen], raw[:nonceLen], expiry[:], t.aad)
	t.count++
	return base64.StdEncoding.EncodeToString(raw[:]), nil
}

// Valid reports whether token was issued by t and has not expired.
func (t *Tokens) Valid(token string) bool {
	// Go's decoder skips CR and LF where Firecracker's refuses them.
	if len(token) > maxTokenLen || strings.ContainsAny(token, "\r\n") {
		return false
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(token)
	if err != nil || len(raw) != tokenBytes {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	plain, err := t.aead.Open(nil, raw[:nonceLen], raw[nonceLen:], t.aad)
	if err != nil || len(plain) != expiryLen {
		return false
	}
	return binary.LittleEndian.Uint64(plain) > t.nowMillis()
}
