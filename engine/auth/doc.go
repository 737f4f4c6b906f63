// Package auth verifies and mints the JSON Web Tokens that guard pearld's
// client-facing endpoints: the WebSocket hub, the REST API and the webhook
// ingest. A Verifier checks a token's signature against the configured
// algorithms only (HS256 with a shared secret by default; RS256, ES256 or
// EdDSA with public keys), the required claims sub, iat and exp, and the
// optional nbf, iss and aud; the resulting Claims answer the permission
// questions of the wire protocol (CanRead, IsAdmin, CanControl,
// AllowsDevice).
//
// Refusals come in two kinds, ErrUnauthenticated and ErrForbidden, whose
// Reason is the short text shown to clients ("Authentication required",
// "Insufficient permissions") and whose HTTPStatus is 401 or 403.
package auth
