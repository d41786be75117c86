// Package microhttp is ember's HTTP/1.1 layer, matching on the wire the one
// Firecracker's API socket speaks (its micro_http crate), quirks included,
// since Firecracker clients compare bytes.
//
// Answers: the status line has no reason phrase ("HTTP/1.1 204 \r\n");
// every answer says "Server: Firecracker API" and "Connection: keep-alive";
// Content-Type and Content-Length are written for every status but 100 and
// 204. Requests: only GET, PUT, PATCH and DELETE, HTTP/1.0 and HTTP/1.1; a
// request line or header line must fit, with its CRLF, in a 1024-byte
// buffer; bodies come only from Content-Length (chunked bodies are not
// decoded) and are bounded by a payload limit. A request that cannot be
// parsed gets a 400 whose body is `{ "error": "<text>\nAll previous
// unanswered requests will be dropped." }` and the connection stays open,
// its parser state as the failure left it.
//
// Parser assembles requests from a byte stream (a connection);
// ParseRequest parses one complete request held in a buffer (what MMDS
// receives). Server is the API socket's event loop; Listen creates the
// socket the way Firecracker does.
package microhttp
