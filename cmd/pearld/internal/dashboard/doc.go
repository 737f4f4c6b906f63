// Package dashboard serves pearld's built-in dashboard: a page that shows
// every device of the fleet live (health, each channel's publishers with
// start and stop buttons, stream quality when a pipeline produces it) and
// whether it is live, on the HTTP fallback or disconnected.
//
// The page is plain HTML, CSS and ES modules embedded in the binary; it
// imports the browser client of sdk/js, served from the same handler, so
// nothing is built when pearld runs. It talks to the WebSocket hub and the
// REST API directly (a different port of the same host, by default), with
// the token the user gives it in the URL fragment (#token=..., never sent
// to the server in a page URL) or pastes into its form; the token is kept
// in the tab's sessionStorage.
package dashboard
