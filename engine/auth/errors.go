package auth

import (
	"errors"
	"net/http"
)

// The two kinds of refusal. Every error returned by Verifier.Verify wraps
// ErrUnauthenticated; callers return ErrForbidden (or wrap it) when a valid
// token lacks a permission. Use Reason and HTTPStatus to answer clients.
var (
	// ErrUnauthenticated means no token, or one that is malformed, badly
	// signed, expired, not yet valid or missing a required claim.
	ErrUnauthenticated = errors.New("authentication required")
	// ErrForbidden means a valid token that does not grant what was asked.
	ErrForbidden = errors.New("insufficient permissions")
)

// The short texts clients see: WebSocket close reasons and REST error
// bodies. They are part of the wire protocol.
const (
	ReasonUnauthenticated = "Authentication required"
	ReasonForbidden       = "Insufficient permissions"
)

// Reason returns the client-facing text for an authentication or
// authorization error: ReasonForbidden for errors wrapping ErrForbidden,
// ReasonUnauthenticated for every other error, and "" for nil. Details of
// why a token was refused are never shown to clients.
func Reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrForbidden):
		return ReasonForbidden
	default:
		return ReasonUnauthenticated
	}
}

// HTTPStatus returns the REST status for an authentication or
// authorization error: 403 for errors wrapping ErrForbidden, 401 for every
// other error, and 200 for nil.
func HTTPStatus(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden
	default:
		return http.StatusUnauthorized
	}
}
