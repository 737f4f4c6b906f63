// Package sdktest runs a plugin of the sdk inside a test, without building
// its binary: Start serves the plugin in-process over the plugin protocol
// (the gRPC service pearld talks to) and returns the host side of the
// connection, and NewDevice starts a fake Pearl (pearltest) to poll. What a
// test gets from Poll is what pearld would receive.
package sdktest
