// Package proto is the contract between pearld and its plugin processes:
// the gRPC service of plugin.proto (generated code, committed; `make proto`
// regenerates it) and the go-plugin handshake both sides must agree on.
//
// Plugin authors do not use this package: the sdk package serves it. The
// host side is pearld's plugins package.
package proto
