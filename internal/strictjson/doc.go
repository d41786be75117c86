// Package strictjson decodes and encodes JSON exactly as Firecracker does with
// serde_json (1.0.15x, default features) and #[derive(Deserialize, Serialize)]:
// the same inputs are accepted and rejected, and every rejection carries
// serde_json's message text and its line/column, byte for byte, so ember's
// API can answer with Firecracker's fault messages.
//
// Go types stand for Rust types through reflection:
//
//   - a struct is a Rust struct; `json:"name"` names a field (`json:"-"` drops
//     it); unknown keys are rejected unless the struct has a blank field tagged
//     `serde:"allow_unknown"`; `serde:"name=X"` on that blank field gives the
//     Rust name used in "expected struct X";
//   - a pointer field is Option<T>: null or absent gives nil; any other field
//     is required unless tagged `serde:"default"`, which leaves the value the
//     Go struct already had when the key is absent (callers preset defaults;
//     see Defaulter for structs the decoder allocates);
//   - bool, uint8..uint64, int8..int64, float32/64 and string are their Rust
//     namesakes (Usize is usize, Path is PathBuf); []T is Vec<T>; map[string]T
//     is a map; Value, json.RawMessage and `any` are serde_json::Value;
//   - string types implementing Variants are unit-variant enums; the hook
//     interfaces StringUnmarshaler, StrVisitor and ValueUnmarshaler model
//     custom Deserialize impls, with serde's error placement.
//
// Invariants: decoding never panics on any input; nesting deeper than
// serde_json's recursion limit (128) is refused before it can grow the Go
// stack (ignored values are skipped iteratively, without a limit, as serde_json
// does); decoding is linear in the input. Error
// positions are serde_json's, quirks included: a data error found after a value
// was read is placed where the parser stood when serde attached it, which may
// be after the closing brace of the enclosing object.
package strictjson
